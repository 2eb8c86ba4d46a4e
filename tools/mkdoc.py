#!/usr/bin/env python3
"""mkdoc.py - makes a test document of any length with a fact at a chosen depth.

The document is laid out exactly like the training examples of tome's own model (see
tools/train/data.py): filler sentences (generated, or prose read from files on this machine) with
the fact inserted at a sentence boundary at DEPTH (0 = start, 1 = end). It is written without a
trailing newline because `tome run` joins documents and the question with "\n\n" verbatim.

--len counts tokens of the whole training-layout example for tome's byte model
(<s> + document + "\n\n" + question + answer + </s>, one token per byte), so `--len 512` is a
prompt of exactly 512 - len(answer) - 1 tokens. Only the Python standard library is needed.

    python3 tools/mkdoc.py --len 2048 --depth 0.3 -o /tmp/doc.txt
    # prints the question on stdout, the expected answer on stderr
    ./tome run -m weights/tome-byte.gguf -f /tmp/doc.txt -p "$(python3 tools/mkdoc.py --question)" --temp 0

Exit status 1 on bad flags (e.g. a length too short to hold the fact and the question).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
import data  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="test document with a fact at a chosen depth")
    ap.add_argument("--len", type=int, default=512, help="tokens of the whole example (>= ~128)")
    ap.add_argument("--depth", type=float, default=0.5, help="0 = start .. 1 = end")
    ap.add_argument("--kind", default="passkey", choices=sorted(data.FACT_KINDS))
    ap.add_argument("--value", default=None, help="the fact's value (default: random)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prose", default="", help="comma list of globs: filler prose files")
    ap.add_argument("--prose-frac", type=float, default=0.5)
    ap.add_argument("-o", "--out", default=None, help="document file (default: stdout)")
    ap.add_argument("--question", action="store_true", help="only print the question and exit")
    ap.add_argument("--json", action="store_true", help="print a JSON record instead")
    a = ap.parse_args()
    if a.question:
        print(data.FACT_KINDS[a.kind][1])
        return 0
    if not 0.0 <= a.depth <= 1.0:
        print("mkdoc: --depth must be in [0, 1]", file=sys.stderr)
        return 1
    prose = data.load_prose(a.prose.split(",")) if a.prose else []
    filler = data.Filler(prose, a.prose_frac)
    r = data.make_rng(a.seed)
    if a.value is not None:
        stmt, q, _ = data.FACT_KINDS[a.kind]
        data.FACT_KINDS[a.kind] = (stmt, q, lambda _r: a.value)
    try:
        ex = data.make_example(r, a.len, filler, kinds=[a.kind], depths=[a.depth])
    except ValueError as e:
        print("mkdoc: %s" % e, file=sys.stderr)
        return 1
    if a.out:
        with open(a.out, "w") as f:
            f.write(ex["doc"])
    else:
        sys.stdout.write(ex["doc"])
        sys.stdout.write("\n")
    if a.json:
        print(json.dumps(dict(question=ex["question"], answer=ex["answer"].strip(),
                              depth=a.depth, tokens=a.len, doc=a.out)))
    elif a.out:
        print(ex["question"])
        print("expected answer:%s" % ex["answer"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

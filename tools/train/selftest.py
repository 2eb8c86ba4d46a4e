"""selftest.py - fast checks of the trainer's pieces (seconds; not part of CI, needs PyTorch).

1. Vocabulary round trip: seeded random printable-ASCII text (spaces, newlines, digits, every
   punctuation byte) encodes to one id per byte and decodes back; and, when ./tome is built,
   `tome tokenize` of the same text gives the same ids (tome's SentencePiece path: spaces become
   U+2581, the rest falls back to byte tokens).
2. Layout: make_example produces exactly the requested number of tokens, the document contains
   the fact, the ids end with question + answer + </s>; mkdoc's document matches.
3. Model vs an independent NumPy forward read back from an exported GGUF, for every RoPE scaling
   (none / linear / ntk / yarn), random weights: max |dlogit| must be < 1e-4.
4. Seeded: two models built with the same seed have identical weights.

    python3 tools/train/selftest.py [--tome ./tome]
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import export_gguf  # noqa: E402
from model import Config, Llama  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tome", default="./tome")
    a = ap.parse_args()
    torch.set_num_threads(1)
    fails = 0

    def check(ok, what):
        nonlocal fails
        print("%s  %s" % ("ok  " if ok else "FAIL", what))
        fails += not ok

    r = random.Random(7)
    text = "".join(r.choice([chr(c) for c in range(32, 127)] + ["\n", " ", " "])
                   for _ in range(2000))
    ids = data.encode(text)
    check(len(ids) == len(text.encode()), "one token per byte (%d bytes)" % len(ids))
    check(data.decode(ids) == text.encode(), "decode(encode(text)) == text")

    tmp = tempfile.mkdtemp(prefix="tome-selftest-")
    torch.manual_seed(3)
    c = Config(n_embd=32, n_layer=2, n_head=4, n_kv=2, n_ff=64)
    m = Llama(c).eval()
    with torch.no_grad():  # non-trivial norm weights so a wrong norm placement shows
        for p in m.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    g = os.path.join(tmp, "m.gguf")
    for sc in (None, dict(method="linear", factor=4.0, orig_ctx=64),
               dict(method="ntk", factor=4.0, orig_ctx=64),
               dict(method="yarn", factor=4.0, orig_ctx=64)):
        export_gguf.write(m, g, 256 if sc else 64, scaling=sc)
        err, mag = export_gguf.check(m, g, n_tokens=40, scaling=sc)
        check(err < 1e-4, "GGUF + NumPy reference vs PyTorch, scaling %s: max |dlogit| %.1e "
              "(|logit| %.2f)" % (sc and sc["method"], err, mag))

    if os.path.exists(a.tome):
        export_gguf.write(m, g, 64)
        f = os.path.join(tmp, "text.txt")
        open(f, "w").write(text)
        out = subprocess.run([a.tome, "tokenize", "-m", g, "-f", f], capture_output=True,
                             text=True)
        tids = [int(x) for x in out.stdout.split()]
        check(out.returncode == 0 and tids == ids, "tome tokenize == data.encode (%d ids)" %
              len(tids))
    else:
        print("skip  tome tokenize round trip (%s not built)" % a.tome)

    fl = data.Filler(None)
    for L in (200, 300, 1000):
        ex = data.make_example(random.Random(L), L, fl, kinds=["passkey", "city"], n_facts=2)
        k, v, _ = ex["facts"][0]
        check(len(ex["ids"]) == L and v in ex["doc"] and ex["ids"][-1] == data.EOS and
              data.decode(ex["ids"]).endswith((ex["question"] + ex["answer"]).encode()),
              "example layout at %d tokens" % L)
    mk = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mkdoc.py")
    d = os.path.join(tmp, "doc.txt")
    out = subprocess.run([sys.executable, mk, "--len", "400", "--depth", "0.25", "--value",
                          "12345", "-o", d], capture_output=True, text=True)
    doc = open(d).read() if out.returncode == 0 else ""
    pos = doc.find("12345")
    check(out.returncode == 0 and out.stdout.strip() == "Q: What is the pass key? A:" and
          len(doc) == 400 - 1 - 2 - len(out.stdout.strip()) - 6 - 1 and
          0.1 < pos / len(doc) < 0.4, "mkdoc: length, question, depth (fact at %.2f)" %
          (pos / max(1, len(doc))))

    torch.manual_seed(11)
    a1 = Llama(c).state_dict()
    torch.manual_seed(11)
    a2 = Llama(c).state_dict()
    check(all(torch.equal(a1[k], a2[k]) for k in a1), "same seed -> same initial weights")
    print("%d failed" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

"""tome_agree.py - checks that tome and the Python model agree on retrieval documents.

For N documents per length (the evaluation documents of eval.py, written as files the way
tools/mkdoc.py writes them), runs

    tome run -m MODEL.gguf -f DOC -p QUESTION --temp 0 -n 8 --print-ids --logits LAST.f32

and compares (a) tome's greedy answer with the Python model's verdict for the same example and
(b) tome's logits at the last prompt position with PyTorch's (max |difference|). The scaling tome
uses comes from the GGUF metadata; the Python side uses the checkpoint's (none for ckpt.pt, the
fine-tuned scaling for ckpt_ft.pt), so pair ckpt.pt with model.gguf and ckpt_ft.pt with
model-yarn.gguf.

    python3 tools/train/tome_agree.py OUT/ckpt_ft.pt OUT/model-yarn.gguf --lengths 128,256,512 --n 20
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import eval as ev  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("gguf")
    ap.add_argument("--tome", default="./tome")
    ap.add_argument("--lengths", default=None)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--exact", action="store_true", help="pass --exact (float activations)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from model import Config, Llama
    ck = torch.load(a.ckpt, map_location="cpu")
    m = Llama(Config(**ck["config"]))
    m.load_state_dict(ck["model"])
    m.eval()
    args = ck["args"]
    filler = data.Filler(data.load_prose(args["prose"]), args["prose_frac"])
    sc = ck.get("scaling")
    lengths = [int(x) for x in a.lengths.split(",")] if a.lengths else [ck["ctx_len"]]
    tmp = tempfile.mkdtemp(prefix="tome-agree-")
    print("| length | n | Python acc | tome acc | verdicts agree | max abs dlogit (last prompt pos) |")
    print("|---|---|---|---|---|---|")
    for L in lengths:
        exs = ev.examples(a.seed + L, a.n, L, filler, args["kinds"], args["n_facts"])
        py_ok = tome_ok = agree = 0
        worst = 0.0
        for i, e in enumerate(exs):
            py = ev.accuracy(m, [e], sc) == 1.0
            doc = os.path.join(tmp, "doc.txt")
            lg = os.path.join(tmp, "last.f32")
            open(doc, "w").write(e["doc"])
            r = subprocess.run([a.tome, "run", "-m", a.gguf, "-f", doc, "-p", e["question"],
                                "--temp", "0", "-n", "8", "-t", "1", "-c", str(L), "--print-ids", "--logits", lg] +
                               (["--exact"] if a.exact else []),
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("tome failed (%d): %s" % (r.returncode, r.stderr.strip()))
            ids = [int(x) for x in r.stdout.split()]
            want = e["ids"][e["answer_start"]:-1]  # answer tokens; then </s> or a stop
            tm = ids[:len(want)] == want and (len(ids) == len(want) or ids[len(want)] == data.EOS)
            prompt = torch.tensor([e["ids"][:e["answer_start"]]])
            with torch.no_grad():
                ref = m(prompt, scaling=sc)[0, -1].double().numpy()
            got = np.fromfile(lg, dtype=np.float32).astype(np.float64)
            worst = max(worst, float(np.abs(got - ref).max()))
            py_ok += py
            tome_ok += tm
            agree += py == tm
        print("| %d | %d | %.2f | %.2f | %d/%d | %.2e |" % (L, a.n, py_ok / a.n, tome_ok / a.n,
                                                          agree, a.n, worst))


if __name__ == "__main__":
    main()

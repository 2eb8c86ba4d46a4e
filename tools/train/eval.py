"""eval.py - retrieval accuracy of a checkpoint by document length and RoPE scaling.

An example passes when every answer token and the closing </s> are the model's argmax given the
true prefix; with greedy decoding that is exactly "tome run prints the right answer and stops"
(greedy generation reproduces a sequence iff each of its tokens is the argmax after the previous
ones), so one forward pass per example suffices.

Scaling for a length L past the training length L0 (factor s = L / L0): none; linear (positions
divided by s); ntk (base * s^(d/(d-2))); yarn (per-pair ramp between extrapolation and 1/s
interpolation, mscale 1 + 0.1 ln s, original context L0) - the formulas of lib/rope.c.

    python3 tools/train/eval.py OUT/ckpt.pt [--lengths 256,512,1024,2048] [--n 100]
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


def examples(seed, n, length, filler, kinds, n_facts):
    """n seeded examples at evenly spread depths (0..1) so every depth is covered."""
    r = data.make_rng(seed)
    out = []
    for i in range(n):
        depth = (i + 0.5) / n
        ex = data.make_example(r, length, filler, kinds=kinds, n_facts=n_facts,
                               depths=[depth] + [r.random() for _ in range(n_facts - 1)], ask=0)
        out.append(ex)
    return out


@torch.no_grad()
def accuracy(model, exs, scaling=None, batch=16, device="cpu"):
    """Fraction of examples whose answer (and </s>) is reproduced greedily."""
    ok = 0
    for i in range(0, len(exs), batch):
        chunk = exs[i:i + batch]
        ids = torch.tensor([e["ids"] for e in chunk], device=device)
        logits = model(ids[:, :-1], scaling=scaling)
        pred = logits.argmax(-1)
        for j, e in enumerate(chunk):
            a = e["answer_start"]
            ok += bool((pred[j, a - 1:] == ids[j, a:]).all())
    return ok / len(exs)


def scaling_for(method, length, train_len):
    if method == "none" or length <= train_len:
        return None
    return dict(method=method, factor=length / train_len, orig_ctx=train_len)


def grid(model, train_len, lengths, methods, filler, kinds, n_facts, n, seed, device="cpu",
         fixed=None):
    """{method: {length: accuracy}}. fixed: a scaling dict to use at every length instead (the
    fine-tuned model's own), reported under its method name + '-ft'."""
    res = {}
    for m in methods:
        res[m] = {}
        for L in lengths:
            exs = examples(seed + L, n, L, filler, kinds, n_facts)
            if fixed is not None:
                sc = dict(fixed)
                if L > sc["orig_ctx"] * sc["factor"]:
                    sc["factor"] = L / sc["orig_ctx"]
            else:
                sc = scaling_for(m, L, train_len)
            res[m][L] = accuracy(model, exs, sc, device=device)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--lengths", default=None, help="comma list; default 1x,2x,4x,8x training length")
    ap.add_argument("--methods", default="none,linear,ntk,yarn")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--heldout", action="store_true", help="filler from held-out prose only")
    ap.add_argument("--seen", action="store_true", help="filler from the training prose only")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from model import Config, Llama
    ck = torch.load(a.ckpt, map_location="cpu")
    m = Llama(Config(**ck["config"]))
    m.load_state_dict(ck["model"])
    m.eval()
    L0 = ck.get("orig_ctx", ck["ctx_len"])
    lengths = [int(x) for x in a.lengths.split(",")] if a.lengths else [L0, 2 * L0, 4 * L0, 8 * L0]
    args = ck["args"]
    if a.heldout:
        filler = data.Filler(data.load_prose(data.heldout_prose_globs()), 1.0)
    elif a.seen:
        filler = data.Filler(data.load_prose(args["prose"]), 1.0)
    else:
        filler = data.Filler(data.load_prose(args["prose"]), args["prose_frac"])
    fixed = ck.get("scaling")
    methods = [fixed["method"]] if fixed else a.methods.split(",")
    res = grid(m, L0, lengths, methods, filler, args["kinds"], args["n_facts"], a.n, a.seed,
               fixed=fixed)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

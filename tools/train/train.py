"""train.py - trains tome's own byte-level long-context model, evaluates it, writes GGUF.

Phases: (1) a curriculum over document lengths (e.g. 256 bytes for the first third, then 512),
AdamW, linear warm-up then cosine decay; (2) optionally a short YaRN fine-tune at a longer length
with the RoPE scaling the exported model will declare; (3) retrieval accuracy at 1x, 2x, 4x, 8x
the final training length under RoPE scaling none / linear / ntk / yarn (and, after the
fine-tune, with the fine-tuned scaling); (4) GGUF export, checked against a NumPy reference.

Loss: cross-entropy over every next-token prediction, with answer tokens weighted
(--answer-weight). `--loss mse` trains the same model on the squared error between softmax(logits)
and the one-hot target instead (for docs/training.md). The log records, per step, the loss, the
training-batch retrieval accuracy (answer reproduced greedily) and the norm of the gradient at
the logits at answer positions.

Seeded: the same arguments give the same data, initialisation and (on the CPU) the same weights.

    python3 tools/train/train.py --preset smoke --out /tmp/tome-smoke
    python3 tools/train/train.py --preset gpu --device cuda --out runs/gpu
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import eval as ev  # noqa: E402
import export_gguf  # noqa: E402
from model import Config, Llama  # noqa: E402

PRESETS = {
    # a tiny model that runs end to end in a few minutes on one CPU thread
    "smoke": dict(n_embd=64, n_layer=2, n_head=4, n_kv=2, n_ff=192, batch=16, steps=300,
                  warmup=30, lr=2e-3, lengths="128:0.34,256", ft_steps=30, ft_len=512,
                  ft_factor=2.0, ft_batch=8, ft_short=0.0, eval_n=32, eval_every=100),
    # the CPU attempt at a usable default model (one thread, <= 20 minutes on a shared machine):
    # retrieval forms at 128 bytes within ~400 steps at this size, then 256 bytes
    "cpu": dict(n_embd=64, n_layer=2, n_head=4, n_kv=2, n_ff=192, batch=16, steps=1600,
                warmup=50, lr=3e-3, lengths="128:0.5,256", ft_steps=150, ft_len=1024,
                ft_factor=4.0, ft_batch=4, ft_short=0.3, eval_n=100, eval_every=400),
    # the probe configuration (3.1M parameters), for the GPU machine
    "gpu": dict(n_embd=256, n_layer=4, n_head=8, n_kv=2, n_ff=768, batch=64, steps=2400,
                warmup=100, lr=1e-3, lengths="256:0.334,512", ft_steps=240, ft_len=2048,
                ft_factor=4.0, ft_batch=16, ft_short=0.3, eval_n=200, eval_every=200),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=1)
    for k in ("n_embd", "n_layer", "n_head", "n_kv", "n_ff", "batch", "steps", "warmup",
              "ft_steps", "ft_len", "ft_batch", "eval_n", "eval_every"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    for k in ("lr", "ft_factor", "ft_short"):
        ap.add_argument("--" + k.replace("_", "-"), type=float, default=None)
    ap.add_argument("--lengths", default=None,
                    help="curriculum 'LEN:FRACTION,...,LEN' (last takes the rest of the steps)")
    ap.add_argument("--rope-base", type=float, default=10000.0)
    ap.add_argument("--ft-scaling", default="yarn", choices=["yarn", "linear", "ntk"])
    ap.add_argument("--init", default=None,
                    help="start from this ckpt.pt and run only the fine-tune + evaluation")
    ap.add_argument("--loss", default="ce", choices=["ce", "mse"])
    ap.add_argument("--answer-weight", type=float, default=5.0)
    ap.add_argument("--kinds", default="passkey", help="fact kinds: passkey,name,city,number")
    ap.add_argument("--n-facts", type=int, default=1)
    ap.add_argument("--prose", default=None,
                    help="comma list of globs of prose files read at training time "
                         "(default /usr/share/common-licenses/*)")
    ap.add_argument("--prose-frac", type=float, default=0.5)
    ap.add_argument("--grad-log-steps", type=int, default=200,
                    help="log the logit gradient norm on every step up to this one")
    ap.add_argument("--no-final-eval", action="store_true")
    ap.add_argument("--f16", action="store_true", help="F16 matrices in the GGUF")
    a = ap.parse_args(argv)
    for k, v in PRESETS[a.preset].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.kinds = a.kinds.split(",")
    a.prose = a.prose.split(",") if a.prose else data.default_prose_globs()
    return a


def curriculum(spec, steps):
    """'256:0.34,512' -> [(0, 256), (816, 512)]: (first step, length)."""
    out, start = [], 0
    for part in spec.split(","):
        if ":" in part:
            L, frac = part.split(":")
            out.append((start, int(L)))
            start += int(round(float(frac) * steps))
        else:
            out.append((start, int(part)))
    return out


def length_at(cur, step):
    L = cur[0][1]
    for s, l in cur:
        if step >= s:
            L = l
    return L


def lr_at(step, total, warmup, lr):
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def batch_of(r, n, length, filler, a):
    exs = [data.make_example(r, length, filler, kinds=a.kinds, n_facts=a.n_facts)
           for _ in range(n)]
    ids = torch.tensor([e["ids"] for e in exs])
    w = torch.ones(n, length - 1)
    ans = torch.zeros(n, length - 1, dtype=torch.bool)
    for j, e in enumerate(exs):
        ans[j, e["answer_start"] - 1:] = True
    w[ans] = a.answer_weight
    return ids, w, ans


def loss_fn(logits, targets, w, kind):
    """Weighted mean over positions of CE, or of sum_v (softmax - onehot)^2."""
    if kind == "ce":
        per = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    else:
        p = logits.softmax(-1)
        y = F.one_hot(targets, logits.shape[-1]).to(p.dtype)
        per = (p - y).pow(2).sum(-1).flatten()
    wf = w.flatten()
    return (per * wf).sum() / wf.sum()


def train_phase(model, opt, a, filler, r, steps, cur, lr, warmup, batch, scaling, log, phase,
                step0=0, short=None):
    """short: (fraction, length): that fraction of steps (drawn at random) use that length."""
    dev = a.device
    t0 = time.time()
    for s in range(steps):
        L = length_at(cur, s)
        if short and r.random() < short[0]:
            L = short[1]
        cur_lr = lr_at(s, steps, warmup, lr)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        ids, w, ans = batch_of(r, batch, L, filler, a)
        ids, w, ans = ids.to(dev), w.to(dev), ans.to(dev)
        logits = model(ids[:, :-1], scaling=scaling)
        want_grad = (step0 + s) <= a.grad_log_steps or s % 10 == 0
        if want_grad:
            logits.retain_grad()
        loss = loss_fn(logits, ids[:, 1:], w, a.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            pred = logits.argmax(-1)
            ok = ((pred == ids[:, 1:]) | ~ans).all(-1).float().mean().item()
            rec = dict(phase=phase, step=step0 + s, len=L, lr=cur_lr, loss=loss.item(),
                       acc=ok, grad_norm=gn.item(), t=round(time.time() - t0, 2))
            if want_grad:
                # gradient of the per-position loss at the logits: undo the weighted mean
                g = logits.grad * (w.sum() / w)[..., None]
                rec["glogit_ans"] = g.norm(dim=-1)[ans].mean().item()
                rec["glogit_all"] = g.norm(dim=-1).mean().item()
                p = logits.softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
                rec["p_ans"] = p[ans].mean().item()
            # both objectives on every step, whichever one is trained, so the curves compare
            other = "mse" if a.loss == "ce" else "ce"
            rec[a.loss] = rec["loss"]
            rec[other] = loss_fn(logits.detach(), ids[:, 1:], w, other).item()
        log.write(json.dumps(rec) + "\n")
        if s % 25 == 0 or s == steps - 1:
            log.flush()
            print("%s step %5d len %4d loss %.4f acc %.2f lr %.2e  %.1fs" %
                  (phase, step0 + s, L, rec["loss"], ok, cur_lr, rec["t"]), flush=True)
        if a.eval_every and s and s % a.eval_every == 0:
            evs = ev.examples(999, min(a.eval_n, 64), L, filler, a.kinds, a.n_facts)
            model.eval()
            acc = ev.accuracy(model, evs, scaling, device=dev)
            model.train()
            log.write(json.dumps(dict(phase=phase, step=step0 + s, len=L, eval_acc=acc)) + "\n")
            print("  eval acc at %d: %.3f" % (L, acc), flush=True)


def save(model, path, a, ctx_len, scaling=None):
    torch.save(dict(model=model.state_dict(), config=model.c.to_dict(), ctx_len=ctx_len,
                    orig_ctx=(scaling or {}).get("orig_ctx", ctx_len), scaling=scaling,
                    args=vars(a)), path)


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    r = data.make_rng(a.seed)
    prose = data.load_prose(a.prose)
    filler = data.Filler(prose, a.prose_frac)
    cfg = Config(n_vocab=data.N_VOCAB, n_embd=a.n_embd, n_layer=a.n_layer, n_head=a.n_head,
                 n_kv=a.n_kv, n_ff=a.n_ff, rope_base=a.rope_base)
    if a.init:
        ck = torch.load(a.init, map_location=a.device)
        cfg = Config(**ck["config"])
    model = Llama(cfg).to(a.device)
    if a.init:
        model.load_state_dict(ck["model"])
        a.steps = 0
        a.lengths = str(ck["ctx_len"])
    print("model: %d params, %s; prose sentences: %d" % (model.n_params(), cfg, len(prose)))
    json.dump(vars(a), open(os.path.join(a.out, "args.json"), "w"), indent=1)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log = open(os.path.join(a.out, "log.jsonl"), "w")
    cur = curriculum(a.lengths, max(1, a.steps))
    L0 = cur[-1][1]
    t0 = time.time()
    model.train()
    train_phase(model, opt, a, filler, r, a.steps, cur, a.lr, a.warmup, a.batch, None, log,
                "train")
    t_train = time.time() - t0
    save(model, os.path.join(a.out, "ckpt.pt"), a, L0)
    results = dict(params=model.n_params(), train_seconds=round(t_train, 1), train_len=L0)

    model.eval()
    lengths = [L0, 2 * L0, 4 * L0, 8 * L0]
    n = a.eval_n
    if not a.no_final_eval:
        results["base"] = ev.grid(model, L0, lengths, ["none", "linear", "ntk", "yarn"], filler,
                                  a.kinds, a.n_facts, n, 1234, device=a.device)
        held = data.load_prose(data.heldout_prose_globs())
        if held:
            hf = data.Filler(held, 1.0)
            sf = data.Filler(prose, 1.0) if prose else filler
            results["prose_seen"] = ev.grid(model, L0, [L0], ["none"], sf, a.kinds, a.n_facts,
                                            n, 77, device=a.device)["none"][L0]
            results["prose_unseen"] = ev.grid(model, L0, [L0], ["none"], hf, a.kinds,
                                              a.n_facts, n, 77, device=a.device)["none"][L0]
        print(json.dumps(results, indent=1), flush=True)
    export_gguf.write(model, os.path.join(a.out, "model.gguf"), L0, f16=a.f16,
                      extra=dict(preset=a.preset, steps=a.steps, seed=a.seed, loss=a.loss))
    err, mag = export_gguf.check(model, os.path.join(a.out, "model.gguf"))
    results["gguf_check_max_abs_dlogit"] = err
    print("GGUF check: NumPy-from-GGUF vs PyTorch max |dlogit| %.2e (|logit| up to %.1f)" %
          (err, mag), flush=True)

    if a.ft_steps > 0:
        sc = dict(method=a.ft_scaling, factor=a.ft_factor, orig_ctx=L0)
        model.train()
        t1 = time.time()
        train_phase(model, opt, a, filler, r, a.ft_steps, [(0, a.ft_len)], a.lr * 0.3,
                    max(1, a.ft_steps // 10), a.ft_batch, sc, log, "finetune", step0=a.steps,
                    short=(a.ft_short, L0) if a.ft_short > 0 else None)
        results["ft_seconds"] = round(time.time() - t1, 1)
        model.eval()
        save(model, os.path.join(a.out, "ckpt_ft.pt"), a, int(L0 * a.ft_factor), sc)
        if not a.no_final_eval:
            results["finetuned"] = ev.grid(model, L0, lengths, [a.ft_scaling], filler, a.kinds,
                                           a.n_facts, n, 1234, device=a.device, fixed=sc)
        p = os.path.join(a.out, "model-%s.gguf" % a.ft_scaling)
        export_gguf.write(model, p, int(L0 * a.ft_factor), f16=a.f16, scaling=sc,
                          extra=dict(preset=a.preset, steps=a.steps, ft_steps=a.ft_steps,
                                     seed=a.seed, loss=a.loss))
        err, _ = export_gguf.check(model, p, scaling=sc)
        results["gguf_ft_check_max_abs_dlogit"] = err
    log.close()
    json.dump(results, open(os.path.join(a.out, "results.json"), "w"), indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

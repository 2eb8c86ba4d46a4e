"""export_gguf.py - writes a trained checkpoint as a llama-architecture GGUF, and checks it.

Uses PyPI's `gguf` package (GGUFWriter / GGUFReader). Tensors are written in llama.cpp's names
and layout (ne[0] = input dim, which is PyTorch's [out, in] row-major as is). 1-D norm weights are
always F32 (as llama.cpp writes them); matrices are F32 or F16.

check(): reads the file back, runs a plain NumPy forward written from tome's description (loops
over heads, explicit adjacent-pair RoPE, no PyTorch) on a token sequence and compares its logits
with the PyTorch model's. This checks the export (names, shapes, orientation) and model.py's
arithmetic against an independent reference at once.

    python3 tools/train/export_gguf.py CKPT.pt OUT.gguf [--f16] [--rope-scaling yarn --rope-factor 4]
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


def tensors_of(model):
    """(gguf name, numpy array [out, in] or [n]) for every weight."""
    c = model.c
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    out = [("token_embd.weight", sd["embed.weight"])]
    for i in range(c.n_layer):
        p = "blocks.%d." % i
        g = "blk.%d." % i
        out += [(g + "attn_norm.weight", sd[p + "attn_norm.weight"]),
                (g + "attn_q.weight", sd[p + "wq.weight"]),
                (g + "attn_k.weight", sd[p + "wk.weight"]),
                (g + "attn_v.weight", sd[p + "wv.weight"]),
                (g + "attn_output.weight", sd[p + "wo.weight"]),
                (g + "ffn_norm.weight", sd[p + "ffn_norm.weight"]),
                (g + "ffn_gate.weight", sd[p + "w_gate.weight"]),
                (g + "ffn_up.weight", sd[p + "w_up.weight"]),
                (g + "ffn_down.weight", sd[p + "w_down.weight"])]
    out.append(("output_norm.weight", sd["out_norm.weight"]))
    if not c.tied:
        out.append(("output.weight", sd["out.weight"]))
    return out


def write(model, path, ctx_len, f16=False, scaling=None, name="tome-byte", extra=None):
    """scaling: None or dict(method=linear|yarn|ntk, factor=s, orig_ctx=n)."""
    import gguf
    c = model.c
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_context_length(int(ctx_len))
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv)
    w.add_layer_norm_rms_eps(c.eps)
    w.add_rope_freq_base(c.rope_base)
    w.add_rope_dimension_count(c.head_dim)
    w.add_vocab_size(c.n_vocab)
    w.add_file_type(1 if f16 else 0)
    if scaling and scaling.get("method", "none") != "none":
        w.add_string("llama.rope.scaling.type", scaling["method"])
        w.add_float32("llama.rope.scaling.factor", float(scaling["factor"]))
        w.add_uint32("llama.rope.scaling.original_context_length", int(scaling["orig_ctx"]))
    toks, scores, types = data.vocab_tokens()
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(data.BOS)
    w.add_eos_token_id(data.EOS)
    w.add_unk_token_id(data.UNK)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    for k, v in (extra or {}).items():
        w.add_string("tome.train." + k, str(v))
    for n, a in tensors_of(model):
        a = a.astype(np.float16 if (f16 and a.ndim == 2) else np.float32)
        w.add_tensor(n, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read(path):
    """-> (metadata dict of scalars/strings, {name: float32 array [out, in]})."""
    import gguf
    r = gguf.GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if not f.types or f.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        v = f.parts[f.data[0]]
        if f.types[0] == gguf.GGUFValueType.STRING:
            meta[f.name] = bytes(v).decode("utf-8")
        else:
            meta[f.name] = v[0].item()
    ts = {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape)]  # GGUF ne -> numpy [out, in]
        ts[t.name] = np.asarray(t.data, dtype=np.float32).reshape(shape)
    return meta, ts


def np_forward(meta, ts, ids, rope_freq, mscale=1.0):
    """Plain NumPy reference of tome's llama forward, float64. ids: list -> logits [T, n_vocab]."""
    L = meta["llama.block_count"]
    nh = meta["llama.attention.head_count"]
    nkv = meta["llama.attention.head_count_kv"]
    eps = meta["llama.attention.layer_norm_rms_epsilon"]
    E = meta["llama.embedding_length"]
    hd = E // nh
    T = len(ids)
    g = {k: v.astype(np.float64) for k, v in ts.items()}

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(v, pos):  # v [hd]
        o = v.copy()
        for i in range(hd // 2):
            a = pos * rope_freq[i]
            c, s = math.cos(a) * mscale, math.sin(a) * mscale
            o[2 * i] = v[2 * i] * c - v[2 * i + 1] * s
            o[2 * i + 1] = v[2 * i] * s + v[2 * i + 1] * c
        return o

    x = g["token_embd.weight"][ids]  # [T, E]
    for l in range(L):
        p = "blk.%d." % l
        n = rms(x, g[p + "attn_norm.weight"])
        q = n @ g[p + "attn_q.weight"].T
        k = n @ g[p + "attn_k.weight"].T
        v = n @ g[p + "attn_v.weight"].T
        att = np.zeros((T, nh * hd))
        for h in range(nh):
            kh = h // (nh // nkv)
            qs = np.stack([rope(q[t, h * hd:(h + 1) * hd], t) for t in range(T)])
            ks = np.stack([rope(k[t, kh * hd:(kh + 1) * hd], t) for t in range(T)])
            vs = v[:, kh * hd:(kh + 1) * hd]
            for t in range(T):
                sc = ks[:t + 1] @ qs[t] / math.sqrt(hd)
                e = np.exp(sc - sc.max())
                att[t, h * hd:(h + 1) * hd] = (e / e.sum()) @ vs[:t + 1]
        hres = x + att @ g[p + "attn_output.weight"].T
        m = rms(hres, g[p + "ffn_norm.weight"])
        gt = m @ g[p + "ffn_gate.weight"].T
        up = m @ g[p + "ffn_up.weight"].T
        x = hres + (gt / (1 + np.exp(-gt)) * up) @ g[p + "ffn_down.weight"].T
    x = rms(x, g["output_norm.weight"])
    wout = g.get("output.weight", g["token_embd.weight"])
    return x @ wout.T


def check(model, path, n_tokens=48, seed=1, scaling=None):
    """Max |logit difference| between the GGUF read back + NumPy reference and the PyTorch
    model, on a seeded example; also checks the metadata round trip and the vocabulary."""
    import torch
    from model import rope_freqs
    meta, ts = read(path)
    c = model.c
    assert meta["general.architecture"] == "llama"
    assert meta["llama.embedding_length"] == c.n_embd
    assert meta["llama.attention.head_count_kv"] == c.n_kv
    r = data.make_rng(seed)
    ids = [data.BOS] + [r.randrange(3, data.N_VOCAB) for _ in range(n_tokens - 1)]
    f, ms = rope_freqs(c.head_dim, c.rope_base, **(scaling or {}))
    ref = np_forward(meta, ts, ids, f.numpy(), ms)
    with torch.no_grad():
        got = model(torch.tensor([ids]), scaling=scaling)[0].double().numpy()
    return float(np.abs(ref - got).max()), float(np.abs(ref).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--f16", action="store_true")
    ap.add_argument("--rope-scaling", default="none")
    ap.add_argument("--rope-factor", type=float, default=1.0)
    a = ap.parse_args()
    import torch
    from model import Config, Llama
    ck = torch.load(a.ckpt, map_location="cpu")
    m = Llama(Config(**ck["config"]))
    m.load_state_dict(ck["model"])
    m.eval()
    ctx = ck["ctx_len"]
    sc = None
    if a.rope_scaling != "none":
        sc = dict(method=a.rope_scaling, factor=a.rope_factor, orig_ctx=ck.get("orig_ctx", ctx))
        ctx = int(sc["orig_ctx"] * a.rope_factor)
    write(m, a.out, ctx, f16=a.f16, scaling=sc)
    err, mag = check(m, a.out, scaling=sc and {"method": sc["method"], "factor": sc["factor"],
                                                 "orig_ctx": sc["orig_ctx"]})
    print("wrote %s; NumPy-from-GGUF vs PyTorch max |dlogit| %.2e (max |logit| %.1f)" %
          (a.out, err, mag))


if __name__ == "__main__":
    main()

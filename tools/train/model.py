"""model.py - a Llama-architecture model computed exactly as tome's `llama` forward computes it.

    x = embed[token]
    per layer:  h = x + Wo . attn(rope(Wq n), rope(Wk n), Wv n),  n = rmsnorm(x) * w_attn_norm
                x = h + W_down . (silu(W_gate m) * (W_up m)),       m = rmsnorm(h) * w_ffn_norm
    logits = W_out . (rmsnorm(x) * w_out_norm)

RMSNorm is x / sqrt(mean(x^2) + eps), eps 1e-5. RoPE rotates ADJACENT pairs (x[2i], x[2i+1]) by
pos * freq[i] (llama.cpp's "normal" mode, Meta's original Llama, llama2.c), with cos and sin both
multiplied by mscale (llama.cpp attn_factor semantics). Attention is causal, GQA (q head h reads
kv head h // (n_head / n_kv)), softmax scale 1/sqrt(head_dim). No biases.

rope_freqs() reproduces lib/rope.c (none, linear, ntk, yarn) so that Python evaluation and tome
see the same angles. Weights use PyTorch's nn.Linear layout [out, in], which is GGUF's
ne = [in, out]: export needs no transposition or permutation.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    n_vocab: int = 260
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 8
    n_kv: int = 2
    n_ff: int = 768
    rope_base: float = 10000.0
    eps: float = 1e-5
    tied: bool = False

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    def to_dict(self):
        return asdict(self)


def rope_freqs(head_dim, base, method="none", factor=1.0, orig_ctx=0, beta_fast=32.0,
               beta_slow=1.0):
    """Per-pair angular frequencies [head_dim/2] (float64) and mscale, as lib/rope.c builds them."""
    d = head_dim
    mscale = 1.0
    if method == "ntk":
        base = base * factor ** (d / (d - 2))
    i = torch.arange(d // 2, dtype=torch.float64)
    f = base ** (-2.0 * i / d)
    if method == "linear":
        f = f / factor
    elif method == "yarn":
        def corr(n_rot):
            return d * math.log(orig_ctx / (n_rot * 2 * math.pi)) / (2 * math.log(base))
        low = max(0.0, math.floor(corr(beta_fast)))
        high = min(d - 1.0, math.ceil(corr(beta_slow)))
        y = (i - low) / max(0.001, high - low)
        ramp = 1.0 - y.clamp(0.0, 1.0)
        f = f / factor * (1 - ramp) + f * ramp
        mscale = 1.0 + 0.1 * math.log(factor)
    elif method not in ("none", "ntk"):
        raise ValueError("unknown rope scaling %r" % method)
    return f, mscale


def rope_cos_sin(n_pos, head_dim, base, scaling=None, device="cpu"):
    """cos, sin tables [n_pos, head_dim/2] (float32), angles formed in double, times mscale."""
    scaling = scaling or {}
    f, ms = rope_freqs(head_dim, base, **scaling)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * f[None, :]
    return ((ang.cos() * ms).float().to(device), (ang.sin() * ms).float().to(device))


def apply_rope(x, cos, sin):
    """x [B, H, T, hd]; rotate pairs (x[2i], x[2i+1])."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).flatten(-2)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        hd = c.head_dim
        self.c = c
        self.attn_norm = RMSNorm(c.n_embd, c.eps)
        self.wq = nn.Linear(c.n_embd, c.n_head * hd, bias=False)
        self.wk = nn.Linear(c.n_embd, c.n_kv * hd, bias=False)
        self.wv = nn.Linear(c.n_embd, c.n_kv * hd, bias=False)
        self.wo = nn.Linear(c.n_head * hd, c.n_embd, bias=False)
        self.ffn_norm = RMSNorm(c.n_embd, c.eps)
        self.w_gate = nn.Linear(c.n_embd, c.n_ff, bias=False)
        self.w_up = nn.Linear(c.n_embd, c.n_ff, bias=False)
        self.w_down = nn.Linear(c.n_ff, c.n_embd, bias=False)

    def forward(self, x, cos, sin):
        c = self.c
        B, T, _ = x.shape
        hd = c.head_dim
        n = self.attn_norm(x)
        q = self.wq(n).view(B, T, c.n_head, hd).transpose(1, 2)
        k = self.wk(n).view(B, T, c.n_kv, hd).transpose(1, 2)
        v = self.wv(n).view(B, T, c.n_kv, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = c.n_head // c.n_kv
        k = k.repeat_interleave(rep, dim=1)  # q head h -> kv head h // rep
        v = v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / math.sqrt(hd))
        h = x + self.wo(a.transpose(1, 2).reshape(B, T, c.n_head * hd))
        m = self.ffn_norm(h)
        return h + self.w_down(F.silu(self.w_gate(m)) * self.w_up(m))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.n_vocab, c.n_embd)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.out_norm = RMSNorm(c.n_embd, c.eps)
        self.out = None if c.tied else nn.Linear(c.n_embd, c.n_vocab, bias=False)
        self._rope_key = None
        self.apply(self._init)
        for b in self.blocks:  # scaled residual projections (GPT-2 style) keep early steps calm
            for w in (b.wo.weight, b.w_down.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def rope(self, T, scaling, device):
        key = (T, tuple(sorted((scaling or {}).items())), str(device))
        if self._rope_key != key:
            self._cos, self._sin = rope_cos_sin(T, self.c.head_dim, self.c.rope_base, scaling,
                                                device)
            self._rope_key = key
        return self._cos, self._sin

    def forward(self, ids, scaling=None, hidden=False):
        """ids [B, T] -> logits [B, T, n_vocab] (or the final normed hidden state)."""
        T = ids.shape[1]
        cos, sin = self.rope(T, scaling, ids.device)
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, cos, sin)
        x = self.out_norm(x)
        if hidden:
            return x
        w = self.embed.weight if self.out is None else self.out.weight
        return x @ w.t()

    def n_params(self):
        return sum(p.numel() for p in self.parameters())

#!/usr/bin/env python3
"""ptxsim_flash_decode.py [PTX] [CASE...] - runs the text of ptx/flash_decode.ptx (the
tome_flash_decode kernel and tome_lse_merge, or tome_flash_decode_v1 with --v1) through
tools/ptxsim.py on small decode cases and compares the merged output with a float64 numpy
attention over the same page bytes (pages from tools/ptxsim_flash_prefill.py's builder:
random f16 values / int8 or 4-bit codes with random f16 scales, scrambled block tables).
Cases cover f16/q8/q4, head dims 40-256, GQA 1-8, window + sinks, a dropped page the window
hides, the by-value key range and the device step header (cuda_flash_decode_step: a fixed
grid of mostly empty splits). Each case runs with cp.async landing late (at the wait) and
early (at issue). Exit 0 when every case passes (max abs error <= 1e-4; |v| <= ~1).

    python3 tools/ptxsim_flash_decode.py            # every case, a few minutes on one core
    python3 tools/ptxsim_flash_decode.py ptx/flash_decode.ptx 0 3

Needs numpy. A developer check of the PTX text before a GPU run, not part of CI.
"""
import os
import re
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ptxsim  # noqa: E402
from ptxsim import Mem, SimError  # noqa: E402
from ptxsim_flash_prefill import make_pages  # noqa: E402


class Kernel(ptxsim.Kernel):
    """ptxsim.Kernel over one entry of a multi-entry file, plus static shared arrays (.shared .align A .TYPE name[N]) laid out in
    declaration order, as flash_decode.ptx declares its tiles."""

    def __init__(self, text, entry):
        body = re.sub(r'//[^\n]*', '', text)
        body = body[body.index('.entry ' + entry + '('):]
        body = body[:body.index('\n}') + 2]  # this entry alone: the file holds three
        super().__init__(body, entry)
        self.static = {}
        self.smem_bytes = 0
        for al, ty, name, n in re.findall(r'\.shared\s+\.align\s+(\d+)\s+\.(\w+)\s+(\w+)\[(\d+)\]', body):
            off = (self.smem_bytes + int(al) - 1) // int(al) * int(al)
            self.static[name] = off
            self.smem_bytes = off + int(n) * {'b8': 1, 'u8': 1, 'f32': 4, 'b32': 4, 'u32': 4}[ty]


class CTA(ptxsim.CTA):
    """ptxsim.CTA plus %ntid.x, %nctaid.y and the static shared arrays' addresses."""

    def __init__(self, k, mem, params, ctaid, nctaid, early_cp=False, seed=0):
        super().__init__(k, mem, params, ctaid, nctaid, k.smem_bytes, early_cp=early_cp, seed=seed)

    def step(self, t):
        """The few instructions flash_decode.ptx uses that ptxsim.CTA does not model (or models
        for 32-bit operands only); everything else goes to ptxsim."""
        op, ops, guard, stmt = self.k.ins[self.pc[t]]
        parts = op.split('.')
        base, ty = parts[0], parts[-1]
        mine = ((base == 'setp' and ty in ('u64', 's64')) or op in ('cvt.u32.u64', 'cvt.s64.s32')
                or op in ('ld.global.u64', 'ld.shared.u16', 'fma.rn.f32', 'div.rn.f32', 'cp.async.wait_all')
                or op == 'cp.async.wait_group')
        if not mine:
            return super().step(t)
        if guard is not None and bool(self.val(t, guard[1])) == guard[0]:
            self.pc[t] += 1
            return
        self.executed += 1
        V = lambda o: self.val(t, o)
        S = lambda o, v: self.setr(t, o, v)
        M64 = ptxsim.M64
        if base == 'setp':
            a, b = V(ops[1]) & M64, V(ops[2]) & M64
            if ty == 's64':
                a, b = a - (1 << 64) if a >> 63 else a, b - (1 << 64) if b >> 63 else b
            S(ops[0], int({'lt': a < b, 'le': a <= b, 'gt': a > b, 'ge': a >= b, 'eq': a == b, 'ne': a != b}[parts[1]]))
        elif op == 'cvt.u32.u64':
            S(ops[0], V(ops[1]) & ptxsim.M32)
        elif op == 'cvt.s64.s32':
            S(ops[0], ptxsim.s32(V(ops[1])) & M64)
        elif op == 'ld.global.u64':
            a = self.addr(t, ops[1])
            if a % 8:
                raise SimError('misaligned global load 0x%x' % a)
            S(ops[0], int.from_bytes(self.mem.read(a, 8), 'little'))
        elif op == 'ld.shared.u16':
            S(ops[0], int.from_bytes(self.sh_read(self.addr(t, ops[1]), 2), 'little'))
        elif op == 'fma.rn.f32':
            a, b, c = (float(ptxsim.f32(V(x))) for x in ops[1:4])
            S(ops[0], ptxsim.bits32(np.float32(a * b + c)))  # the product is exact in float64
        elif op == 'div.rn.f32':
            with np.errstate(all='ignore'):
                S(ops[0], ptxsim.bits32(ptxsim.f32(V(ops[1])) / ptxsim.f32(V(ops[2]))))
        else:  # cp.async.wait_all / wait_group N: the older groups land (all but the newest N)
            if op == 'cp.async.wait_all':
                self.pending[t].append(self.open_group[t])
                self.open_group[t] = []
                keep = 0
            else:
                keep = V(ops[0])
            while len(self.pending[t]) > keep:
                for c in self.pending[t].pop(0):
                    self.do_copy(c)
        self.pc[t] += 1

    def val(self, t, o):
        if o == '%ntid.x':
            return self.n
        if o == '%nctaid.y':
            return self.nctaid[1]
        if o in self.k.static:
            return self.k.static[o]
        return super().val(t, o)


def run_case(ptx, entry, dt, H, rep, D, P, qp, W, S, splits, step, seed, early, holes=()):
    rng = np.random.default_rng(seed)
    nh = H * rep
    npb = (qp + 1 + P - 1) // P
    total = npb + 3
    kbuf, kdeq, pbk, sok = make_pages(rng, dt, H, D, P, total)
    vbuf, vdeq, pbv, sov = make_pages(rng, dt, H, D, P, total)
    ids = rng.permutation(total)[:npb].astype(np.int32)
    for h in holes:
        ids[h] = -1
    q = (rng.uniform(-2, 2, (nh, D)) + 0.01).astype(np.float32)
    scale = np.float32(1.0) / np.sqrt(np.float32(D))
    # the visible keys as the launchers derive them (kvcache.c's `visible`)
    lo, se = 0, 0
    if W:
        lo = max(0, qp - W + 1)
        se = min(S, lo)
    nvis = se + qp + 1 - lo
    mem = Mem()
    kb, vb, bt, qa = mem.alloc(kbuf), mem.alloc(vbuf), mem.alloc(ids.tobytes()), mem.alloc(q.tobytes())
    if step:
        sp = mem.alloc(struct.pack('<3Q', se, lo, nvis))
        chunk, nsink, winlo, nv = 0, 0, 0, 0
    else:
        sp = 0
        chunk = (nvis + splits - 1) // splits
        chunk = (chunk + 31) // 32 * 32
        splits = (nvis + chunk - 1) // chunk
        nsink, winlo, nv = se, lo, nvis
    pm = mem.alloc(b'\xa5' * (4 * splits * nh))
    pl = mem.alloc(b'\xa5' * (4 * splits * nh))
    pacc = mem.alloc(b'\xa5' * (4 * splits * nh * D))
    out = mem.alloc(np.full((nh, D), np.nan, np.float32).tobytes())
    k = Kernel(ptx, entry)
    vals = dict(p_pm=pm, p_pl=pl, p_pacc=pacc, p_q=qa, p_k=kb, p_v=vb, p_bt=bt, p_pbk=pbk, p_pbv=pbv,
                p_sok=sok if dt else 0, p_sov=sov if dt else 0, p_nsink=nsink, p_winlo=winlo, p_nvis=nv,
                p_chunk=chunk, p_scale=int(np.float32(scale).view(np.uint32)), p_nhead=nh, p_rep=rep, p_P=P,
                p_dk=D, p_dv=D, p_dtype=dt, p_step=sp)
    steps = 0
    for sy in range(splits):
        for g in range(H):
            c = CTA(k, mem, vals, (g, sy), (H, splits), early_cp=early, seed=seed + sy * 7 + g)
            c.run()
            steps += c.executed
    mk = Kernel(ptx, 'tome_lse_merge')
    mv = dict(p_out=out, p_pm=pm, p_pl=pl, p_pacc=pacc, p_nparts=splits, p_nhead=nh, p_dv=D)
    for h in range(nh):
        c = CTA(mk, mem, mv, (h, 0), (nh, 1), early_cp=early, seed=seed + h)
        c.run()
        steps += c.executed
    got = np.frombuffer(mem.read(out, nh * D * 4), np.float32).reshape(nh, D)
    js = np.arange(qp + 1)
    if W:
        js = js[(js >= lo) | (js < se)]
    js = js[ids[js // P] >= 0]
    pages = ids[js // P]
    want = np.zeros((nh, D))
    for h in range(nh):
        g = h // rep
        kk = kdeq[pages, g, js % P].astype(np.float64)
        vv = vdeq[pages, g, js % P].astype(np.float64)
        lg = float(scale) * (kk @ q[h].astype(np.float64))
        w = np.exp(lg - lg.max())
        want[h] = (w @ vv) / w.sum()
    err = np.max(np.abs(got - want)) if not np.isnan(got).any() else float('inf')
    return err, steps


CASES = [
    # dt, H, rep, D, P, q_pos, window, sinks, splits, step
    (0, 2, 2, 64, 48, 99, 0, 0, 2, 0),
    (1, 2, 2, 64, 48, 99, 0, 0, 2, 0),
    (2, 2, 2, 64, 48, 99, 0, 0, 2, 0),
    (1, 1, 4, 40, 20, 50, 30, 3, 3, 1),     # q8 scale rows at odd rows: the 2-byte shift
    (2, 1, 4, 40, 20, 50, 30, 3, 3, 1),
    (0, 1, 1, 136, 16, 44, 0, 0, 4, 1),     # dims over 128: smaller tiles
    (2, 1, 8, 128, 64, 149, 0, 0, 2, 0),    # GQA 8 x 128 = 1024
    (1, 2, 4, 128, 64, 120, 50, 4, 66, 1),  # the step header over 66 splits, most empty
    (0, 1, 4, 128, 64, 96, 0, 0, 3, 1),
    (2, 1, 2, 64, 16, 79, 30, 4, 4, 1),     # a dropped page between the sinks and the window
    (1, 1, 2, 256, 16, 39, 0, 0, 1, 0),
]

if __name__ == '__main__':
    here = os.path.dirname(os.path.abspath(__file__))
    args = [a for a in sys.argv[1:] if a != '--v1']
    entry = 'tome_flash_decode_v1' if '--v1' in sys.argv else 'tome_flash_decode'
    path = args[0] if args and not args[0].isdigit() else os.path.join(here, '..', 'ptx', 'flash_decode.ptx')
    ptx = open(path).read()
    sel = [int(a) for a in args if a.isdigit()] or range(len(CASES))
    bad = 0
    for ci in sel:
        c = CASES[ci]
        for early in (False, True):
            t0 = time.time()
            try:
                err, steps = run_case(ptx, entry, *c, seed=20 + ci, early=early, holes=(1,) if ci == 9 else ())
                ok = err <= 1e-4
                msg = 'max abs err %.3g %s' % (err, 'ok' if ok else 'FAIL')
            except SimError as e:
                ok, msg, steps = False, 'SIM ERROR: %s' % e, 0
            bad += not ok
            print('%s case %d %s (%s cp.async): %s [%d instr, %.1f s]' % (entry, ci, c, 'early' if early else 'late', msg,
                                                                           steps, time.time() - t0), flush=True)
    sys.exit(1 if bad else 0)

#!/usr/bin/env python3
"""ptxsim_flash_prefill.py [PTX] [CASE...] - runs the text of ptx/flash_prefill.ptx through
tools/ptxsim.py on small prefill cases and compares every output with a float64 numpy
attention over the same page bytes (max abs error <= 2e-3 with |v| <= ~1, the bound
tests/test_cuda_fa.c explains). Pages are built in lib/kvcache.h's byte layout from random
f16 values / int8 or 4-bit codes with random f16 scales; block tables are scrambled; one case
has dropped pages (-1) that its window hides. Each case runs twice: cp.async landing late (at
wait_group) and early (at issue). Exit 0 when every case passes. A case takes 2-20 s on one
core; all of them about 3 minutes:

    python3 tools/ptxsim_flash_prefill.py                 # every case
    python3 tools/ptxsim_flash_prefill.py ptx/flash_prefill.ptx 0 3   # cases 0 and 3

Needs numpy. A developer check of the PTX text before a GPU run, not part of CI.
"""
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import CTA, Kernel, Mem, SimError  # noqa: E402

def page_layout(dt, H, D, P):
    rb = 2 * D if dt == 0 else D if dt == 1 else D // 2
    vals = H * P * rb
    so = (vals + 15) // 16 * 16
    G = (D + 31) // 32
    sc = 0 if dt == 0 else H * P * 2 if dt == 1 else H * P * G * 4
    pb = (so + sc + 255) // 256 * 256
    return rb, so, pb, G

def make_pages(rng, dt, H, D, P, npages):
    rb, so, pb, G = page_layout(dt, H, D, P)
    buf = bytearray(pb * npages)
    deq = np.zeros((npages, H, P, D), np.float32)
    for p in range(npages):
        base = p * pb
        if dt == 0:
            x = rng.uniform(-1, 1, (H, P, D)).astype(np.float16)
            buf[base:base + H * P * rb] = x.tobytes()
            deq[p] = x.astype(np.float32)
        elif dt == 1:
            q = rng.integers(-127, 128, (H, P, D)).astype(np.int8)
            d = rng.uniform(0.004, 0.008, (H, P)).astype(np.float16)
            buf[base:base + H * P * rb] = q.tobytes()
            buf[base + so:base + so + H * P * 2] = d.tobytes()
            deq[p] = d.astype(np.float32)[:, :, None] * q.astype(np.float32)
        else:
            q = rng.integers(0, 16, (H, P, D)).astype(np.uint8)
            packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).astype(np.uint8)
            d = rng.uniform(0.05, 0.12, (H, P, G)).astype(np.float16)
            m = rng.uniform(-0.9, -0.5, (H, P, G)).astype(np.float16)
            dm = np.stack([d, m], axis=-1)
            buf[base:base + H * P * rb] = packed.tobytes()
            buf[base + so:base + so + dm.nbytes] = dm.tobytes()
            df = np.repeat(d.astype(np.float32), 32, axis=2)[:, :, :D]
            mf = np.repeat(m.astype(np.float32), 32, axis=2)[:, :, :D]
            deq[p] = (df * q.astype(np.float32)).astype(np.float32) + mf
    return buf, deq, pb, so

def run_case(ptx, dt, H, rep, D, P, pos0, n, W=0, S=0, seed=1, early=False, holes=()):
    rng = np.random.default_rng(seed)
    kvlen = pos0 + n
    nh = H * rep
    npb = (kvlen + P - 1) // P
    total = npb + 3
    kbuf, kdeq, pbk, sok = make_pages(rng, dt, H, D, P, total)
    vbuf, vdeq, pbv, sov = make_pages(rng, dt, H, D, P, total)
    ids = rng.permutation(total)[:npb].astype(np.int32)
    for h in holes:
        ids[h] = -1
    q = rng.uniform(-2, 2, (n, nh, D)).astype(np.float32) + 0.01
    scale = 1.0 / math.sqrt(D)
    qscale = np.float32(np.float32(scale) * np.float32(1.4426950408889634))
    mem = Mem()
    kb, vb = mem.alloc(kbuf), mem.alloc(vbuf)
    bt = mem.alloc(ids.tobytes())
    qa = mem.alloc(q.tobytes())
    out = mem.alloc(np.full((n, nh, D), np.nan, np.float32).tobytes())
    k = Kernel(ptx, 'tome_flash_prefill')
    vals = dict(p_out=out, p_q=qa, p_k=kb, p_v=vb, p_bt=bt, p_pbk=pbk, p_pbv=pbv, p_sok=sok if dt else 0,
                p_sov=sov if dt else 0, p_pos0=pos0, p_nq=n, p_qscale=int(np.float32(qscale).view(np.uint32)),
                p_nhead=nh, p_rep=rep, p_P=P, p_dk=D, p_dv=D, p_window=W, p_sinks=S if W else 0, p_dtype=dt)
    gx = (n * rep + 63) // 64
    steps = 0
    for gy in range(H):
        for cx in range(gx):
            c = CTA(k, mem, vals, (cx, gy), (gx, H), 69632, early_cp=early, seed=seed + cx)
            c.run()
            steps += c.executed
    got = np.frombuffer(mem.read(out, n * nh * D * 4), np.float32).reshape(n, nh, D)
    # reference
    want = np.zeros((n, nh, D))
    for i in range(n):
        p = pos0 + i
        js = np.arange(p + 1)
        if W:
            lo = max(0, p - W + 1)
            ns = min(S, lo)
            js = js[(js >= lo) | (js < ns)]
        pages = ids[js // P]
        for h in range(nh):
            g = h // rep
            kk = kdeq[pages, g, js % P].astype(np.float64)
            vv = vdeq[pages, g, js % P].astype(np.float64)
            lg = scale * (kk @ q[i, h].astype(np.float64))
            w = np.exp(lg - lg.max())
            want[i, h] = (w @ vv) / w.sum()
    err = np.nanmax(np.abs(got - want)) if not np.isnan(got).any() else float('inf')
    return err, steps

if __name__ == '__main__':
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '..', 'ptx', 'flash_prefill.ptx')
    ptx = open(path).read()
    cases = [
        # dt, H, rep, D, P, pos0, n, W, S
        (0, 1, 1, 64, 48, 0, 17, 0, 0),
        (0, 1, 4, 128, 48, 30, 40, 0, 0),
        (1, 1, 2, 64, 16, 5, 70, 0, 0),
        (2, 1, 2, 64, 48, 3, 40, 0, 0),
        (2, 1, 1, 96, 64, 60, 20, 0, 0),
        (0, 2, 1, 80, 48, 100, 20, 30, 3),
        (1, 1, 1, 128, 64, 200, 10, 50, 70),
        (0, 1, 8, 64, 48, 0, 9, 0, 0),
        (1, 1, 4, 64, 50, 400, 10, 64, 16),   # gap tiles skipped; dropped pages, one inside tile 0
        (2, 1, 1, 128, 32, 0, 130, 0, 0),     # three row blocks of one head
    ]
    sel = [int(a) for a in sys.argv[2:]] or range(len(cases))
    bad = 0
    for ci in sel:
        c = cases[ci]
        for early in (False, True):
            t0 = time.time()
            try:
                err, steps = run_case(ptx, *c, seed=10 + ci, early=early, holes=(1, 2, 3) if ci == 8 else ())
                ok = err <= 2e-3
                msg = 'max abs err %.3g %s' % (err, 'ok' if ok else 'FAIL')
            except SimError as e:
                ok, msg, steps = False, 'SIM ERROR: %s' % e, 0
            bad += not ok
            print('case %d %s (%s cp.async): %s [%d instr, %.1f s]' % (ci, c, 'early' if early else 'late', msg, steps, time.time() - t0), flush=True)
    sys.exit(1 if bad else 0)

#!/usr/bin/env python3
"""ptxsim.py - a small interpreter for the PTX subset the hand-written tensor-core kernels use
(first ptx/flash_prefill.ptx), so the PTX TEXT itself can be run on a machine without a GPU.

What it models: one CTA at a time, every thread with its own PC and registers (raw bit
patterns; f32 / f16 arithmetic through numpy with IEEE round-to-nearest); the warp-collective
instructions (ldmatrix .x4 with and without .trans, mma.m16n8k16 f16 -> f32, shfl.bfly,
vote.all, bar.warp.sync) run when all 32 lanes of a warp stand at the same instruction - lanes
at different ones are reported as divergence; bar.sync releases when every thread of the CTA
stands at one. Warps race: a random warp runs until its lanes block, so a missing barrier
shows up as stale or clobbered shared memory. cp.async copies land at the issuing thread's
wait_group (late) or at issue (early), selectable. Every global access must lie inside an
allocation, every shared access inside the CTA's shared memory, aligned to its size.

What it does not model: timing, bank conflicts, the exact rounding of ex2.approx (numpy exp2)
and of the tensor cores' internal sums (f64 here), .ftz, caches; instructions outside the
subset raise SimError naming them. The fragment layouts of ldmatrix and mma are the PTX ISA's
as this file reads them: the same reading as tests/fake_cuda.c's emulators, so a misreading
of the ISA would fool both; a GPU run (tests/gpu.sh) is the final word.

Library only; tools/ptxsim_flash_prefill.py is the driver for the FlashAttention kernel.
Needs python3 and numpy (a developer tool, not part of the build or of CI).
"""
import random
import re

import numpy as np

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def f32(bits):
    return np.uint32(bits & M32).view(np.float32)


def bits32(x):
    return int(np.float32(x).view(np.uint32))


def f16(bits):
    return np.uint16(bits & 0xFFFF).view(np.float16)


def bits16(x):
    return int(np.float16(x).view(np.uint16))


def s32(x):
    x &= M32
    return x - (1 << 32) if x & 0x80000000 else x


class SimError(Exception):
    pass


class Mem:
    def __init__(self):
        self.allocs = []  # (base, bytearray)
        self.next = 1 << 20

    def alloc(self, data):
        base = self.next
        buf = bytearray(data)
        self.allocs.append((base, buf))
        self.next += (len(buf) + 4096) // 256 * 256 + 256
        return base

    def find(self, addr, n):
        for base, buf in self.allocs:
            if base <= addr and addr + n <= base + len(buf):
                return buf, addr - base
        raise SimError("global access 0x%x + %d outside every allocation" % (addr, n))

    def read(self, addr, n):
        buf, o = self.find(addr, n)
        return bytes(buf[o:o + n])

    def write(self, addr, data):
        buf, o = self.find(addr, len(data))
        buf[o:o + len(data)] = data


def split_ops(s):
    out, depth, cur = [], 0, ''
    for ch in s:
        if ch in '{[':
            depth += 1
        elif ch in '}]':
            depth -= 1
        if ch == ',' and depth == 0:
            out.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


class Kernel:
    def __init__(self, text, entry):
        text = re.sub(r'//[^\n]*', '', text)
        m = re.search(r'\.entry\s+' + entry + r'\s*\((.*?)\)(.*?)\{(.*)\}', text, re.S)
        if not m:
            raise SimError('entry not found')
        self.params = re.findall(r'\.param\s+\.(\w+)\s+(\w+)', m.group(1))
        body = m.group(3)
        self.shared_syms = re.findall(r'\.shared\s+\.align\s+\d+\s+\.b8\s+(\w+)\[\]', text)
        self.ins, self.labels = [], {}
        for stmt in body.split(';'):
            stmt = stmt.strip()
            while True:
                lm = re.match(r'^([A-Za-z_][A-Za-z0-9_]*):\s*', stmt)
                if not lm:
                    break
                self.labels[lm.group(1)] = len(self.ins)
                stmt = stmt[lm.end():]
            if not stmt or stmt.startswith('.reg') or stmt.startswith('.maxntid') or stmt.startswith('.shared'):
                continue
            guard = None
            gm = re.match(r'^@(!?)(%\w+)\s+', stmt)
            if gm:
                guard = (gm.group(1) == '!', gm.group(2))
                stmt = stmt[gm.end():]
            parts = stmt.split(None, 1)
            op = parts[0]
            ops = split_ops(parts[1]) if len(parts) > 1 else []
            self.ins.append((op, ops, guard, stmt))


COLLECTIVE = ('ldmatrix', 'mma', 'shfl', 'vote', 'bar.warp.sync')


class CTA:
    def __init__(self, k, mem, params, ctaid, nctaid, smem_bytes, early_cp=False, seed=0):
        self.k, self.mem, self.params = k, mem, params
        self.ctaid, self.nctaid = ctaid, nctaid
        self.smem = bytearray(b'\xa5' * smem_bytes)
        self.early = early_cp
        self.rng = random.Random(seed)
        self.n = 128
        self.regs = [dict() for _ in range(self.n)]
        self.pc = [0] * self.n
        self.done = [False] * self.n
        self.pending = [[] for _ in range(self.n)]  # list of groups, each a list of copies
        self.open_group = [[] for _ in range(self.n)]
        self.executed = 0

    # ---- operand access ----
    def val(self, t, o):
        r = self.regs[t]
        if o.startswith('%'):
            if o == '%tid.x':
                return t
            if o == '%ctaid.x':
                return self.ctaid[0]
            if o == '%ctaid.y':
                return self.ctaid[1]
            if o == '%nctaid.x':
                return self.nctaid[0]
            if o not in r:
                raise SimError('thread %d reads %s before writing it (pc %d: %s)' % (t, o, self.pc[t], self.k.ins[self.pc[t]][3]))
            return r[o]
        if o in self.k.shared_syms:
            return 0
        if re.match(r'^0[fF][0-9a-fA-F]{8}$', o):
            return int(o[2:], 16)
        if o.startswith('0x') or o.startswith('-0x'):
            return int(o, 16) & M64
        return int(o) & M64

    def addr(self, t, o):
        inner = o.strip()[1:-1].strip()
        m = re.match(r'^(%?\w+)\s*(?:\+\s*(-?\d+))?$', inner)
        base, off = m.group(1), int(m.group(2) or 0)
        if base in self.params:
            return ('param', base)
        return (self.val(t, base) + off) & M64

    def setr(self, t, o, v):
        self.regs[t][o] = v

    def sh_read(self, a, n):
        if a % n and n <= 16 and a % min(n, 16):
            raise SimError('misaligned shared read %d (%d bytes)' % (a, n))
        if a + n > len(self.smem):
            raise SimError('shared read %d + %d out of range' % (a, n))
        return bytes(self.smem[a:a + n])

    def sh_write(self, a, data):
        n = len(data)
        if a % min(n, 16):
            raise SimError('misaligned shared write %d (%d bytes)' % (a, n))
        if a + n > len(self.smem):
            raise SimError('shared write %d + %d out of range' % (a, n))
        self.smem[a:a + n] = data

    def do_copy(self, c):
        dst, src, size, ssz = c
        data = self.mem.read(src, ssz) if ssz else b''
        self.sh_write(dst, data + bytes(size - ssz))

    # ---- one thread's non-collective instruction ----
    def step(self, t):
        op, ops, guard, stmt = self.k.ins[self.pc[t]]
        if guard is not None:
            p = self.val(t, guard[1])
            if bool(p) == guard[0]:
                self.pc[t] += 1
                return
        self.executed += 1
        V = lambda o: self.val(t, o)
        S = lambda o, v: self.setr(t, o, v)
        base = op.split('.')[0]
        parts = op.split('.')
        ty = parts[-1]
        nxt = self.pc[t] + 1
        if base == 'bra':
            nxt = self.k.labels[ops[0]]
        elif base == 'ret':
            self.done[t] = True
        elif base == 'ld' and parts[1] == 'param':
            S(ops[0], self.params[ops[1][1:-1]])
        elif base == 'cvta':
            S(ops[0], V(ops[1]))
        elif base == 'mov':
            if ops[1].startswith('{'):  # pack
                hs = [V(x.strip()) & 0xFFFF for x in ops[1][1:-1].split(',')]
                S(ops[0], hs[0] | hs[1] << 16)
            elif ops[0].startswith('{'):  # unpack
                hs = [x.strip() for x in ops[0][1:-1].split(',')]
                v = V(ops[1])
                S(hs[0], v & 0xFFFF)
                S(hs[1], v >> 16 & 0xFFFF)
            else:
                v = V(ops[1])
                S(ops[0], v & (M64 if ty in ('u64', 'b64', 's64') else 0xFFFF if ty == 'b16' else M32))
        elif base in ('add', 'sub', 'mul', 'mad', 'div', 'rem', 'min', 'max', 'shl', 'shr', 'and', 'or', 'xor') and ty in ('u32', 's32', 'b32', 'u64', 'b64', 'pred'):
            if ty == 'pred':
                a, b = V(ops[1]), V(ops[2])
                S(ops[0], int(bool(a) and bool(b)) if base == 'and' else int(bool(a) or bool(b)))
            else:
                wide = ty in ('u64', 'b64')
                mask = M64 if wide else M32
                a, b = V(ops[1]) & mask, V(ops[2]) & mask
                if base == 'add':
                    r = a + b
                elif base == 'sub':
                    r = a - b
                elif base == 'mul':
                    r = a * b if parts[1] in ('lo', 'wide') else None
                    if parts[1] == 'wide':
                        S(ops[0], (a & M32) * (b & M32))
                        self.pc[t] = nxt
                        return
                elif base == 'mad':
                    r = a * b + (V(ops[3]) & mask)
                elif base == 'div':
                    r = a // b
                elif base == 'rem':
                    r = a % b
                elif base in ('min', 'max'):
                    if ty == 's32':
                        r = (min if base == 'min' else max)(s32(a), s32(b))
                    else:
                        r = (min if base == 'min' else max)(a, b)
                elif base == 'shl':
                    r = a << b if b < (64 if wide else 32) else 0
                elif base == 'shr':
                    r = a >> b
                elif base == 'and':
                    r = a & b
                elif base == 'or':
                    r = a | b
                else:
                    r = a ^ b
                S(ops[0], r & mask)
        elif base in ('add', 'sub', 'mul', 'max', 'min') and ty == 'f32':
            a, b = f32(V(ops[1])), f32(V(ops[2]))
            with np.errstate(all='ignore'):
                r = a + b if base == 'add' else a - b if base == 'sub' else a * b if base == 'mul' else \
                    (np.fmax(a, b) if base == 'max' else np.fmin(a, b))
            S(ops[0], bits32(r))
        elif base in ('sub', 'mul') and ty == 'f16x2':
            a, b = V(ops[1]), V(ops[2])
            res = 0
            for h in range(2):
                x, y = np.float32(f16(a >> 16 * h)), np.float32(f16(b >> 16 * h))
                with np.errstate(all='ignore'):
                    z = x - y if base == 'sub' else x * y
                res |= bits16(np.float16(z)) << 16 * h
            S(ops[0], res)
        elif base == 'ex2':
            with np.errstate(all='ignore'):
                S(ops[0], bits32(np.exp2(f32(V(ops[1])))))
        elif base == 'rcp':
            with np.errstate(all='ignore'):
                S(ops[0], bits32(np.float32(1) / f32(V(ops[1]))))
        elif base == 'setp':
            cmp = parts[1]
            a, b = V(ops[1]), V(ops[2])
            if ty == 'f32':
                a, b = float(f32(a)), float(f32(b))
            elif ty == 's32':
                a, b = s32(a), s32(b)
            else:
                a, b = a & M32, b & M32
            r = {'lt': a < b, 'le': a <= b, 'gt': a > b, 'ge': a >= b, 'eq': a == b, 'ne': a != b}[cmp]
            S(ops[0], int(r))
        elif base == 'selp':
            S(ops[0], V(ops[1]) if V(ops[3]) else V(ops[2]))
        elif base == 'cvt':
            if op == 'cvt.u64.u32':
                S(ops[0], V(ops[1]) & M32)
            elif op == 'cvt.rn.f32.s32':
                S(ops[0], bits32(np.float32(s32(V(ops[1])))))
            elif op == 'cvt.rn.f32.u32':
                S(ops[0], bits32(np.float32(V(ops[1]) & M32)))
            elif op == 'cvt.f32.f16':
                S(ops[0], bits32(np.float32(f16(V(ops[1])))))
            elif op == 'cvt.rn.f16x2.f32':
                hi, lo = f32(V(ops[1])), f32(V(ops[2]))
                with np.errstate(all='ignore'):
                    S(ops[0], bits16(np.float16(lo)) | bits16(np.float16(hi)) << 16)
            else:
                raise SimError('cvt ' + op)
        elif base == 'bfe':
            a, pos, ln = V(ops[1]) & M32, V(ops[2]), V(ops[3])
            x = (a >> pos) & ((1 << ln) - 1)
            if ty == 's32' and x >> (ln - 1) & 1:
                x -= 1 << ln
            S(ops[0], x & M32)
        elif base == 'prmt':
            a, b, sel = V(ops[1]) & M32, V(ops[2]) & M32, V(ops[3])
            src = (b << 32 | a).to_bytes(8, 'little')
            r = 0
            for i in range(4):
                nib = sel >> 4 * i & 0xF
                if nib & 8:
                    raise SimError('prmt sign mode not modelled')
                r |= src[nib & 7] << 8 * i
            S(ops[0], r)
        elif base == 'ld' and parts[1] in ('global', 'shared'):
            a = self.addr(t, ops[1])
            if parts[1] == 'global':
                if parts[2] != 'nc':
                    raise SimError(op)
                vec = parts[3] if parts[3].startswith('v') else None
            else:
                vec = parts[2] if parts[2].startswith('v') else None
            n = int(vec[1:]) if vec else 1
            esz = 2 if ty in ('b16',) else 4
            data = self.mem.read(a, n * esz) if parts[1] == 'global' else self.sh_read(a, n * esz)
            if parts[1] == 'global' and a % (n * esz):
                raise SimError('misaligned global load 0x%x' % a)
            dsts = [x.strip() for x in ops[0][1:-1].split(',')] if vec else [ops[0]]
            for i, d in enumerate(dsts):
                v = int.from_bytes(data[i * esz:(i + 1) * esz], 'little')
                if ty == 's32':
                    v &= M32
                S(d, v)
        elif base == 'st':
            a = self.addr(t, ops[0])
            vec = parts[2] if parts[2].startswith('v') else None
            srcs = [x.strip() for x in ops[1][1:-1].split(',')] if vec else [ops[1]]
            data = b''.join((V(s) & M32).to_bytes(4, 'little') for s in srcs)
            if parts[1] == 'global':
                if a % len(data):
                    raise SimError('misaligned global store 0x%x' % a)
                self.mem.write(a, data)
            else:
                self.sh_write(a, data)
        elif base == 'cp':
            if op == 'cp.async.commit_group':
                self.pending[t].append(self.open_group[t])
                self.open_group[t] = []
            elif op == 'cp.async.wait_group':
                if V(ops[0]) != 0:
                    raise SimError('wait_group N > 0 not modelled')
                for g in self.pending[t]:
                    for c in g:
                        self.do_copy(c)
                self.pending[t] = []
                if self.open_group[t]:
                    raise SimError('wait_group with uncommitted copies')
            else:
                dst, src, size = self.addr(t, ops[0]), self.addr(t, ops[1]), V(ops[2])
                ssz = V(ops[3]) if len(ops) > 3 else size
                if dst % size or (ssz and src % size):
                    raise SimError('misaligned cp.async %d <- 0x%x (%d)' % (dst, src, size))
                if parts[2] == 'cg' and size != 16:
                    raise SimError('cp.async.cg needs 16 bytes')
                c = (dst, src, size, ssz)
                if ssz:
                    self.mem.read(src, ssz)  # bounds check at issue
                if self.early:
                    self.do_copy(c)
                else:
                    self.open_group[t].append(c)
        else:
            raise SimError('unmodelled instruction: ' + stmt)
        self.pc[t] = nxt

    def kind(self, t):
        op = self.k.ins[self.pc[t]][0]
        if op.startswith('bar.sync'):
            return 'bar'
        for c in COLLECTIVE:
            if op.startswith(c):
                return 'coll'
        return None

    def run_thread(self, t):
        while not self.done[t]:
            if self.kind(t):
                return
            self.step(t)

    # ---- warp collectives ----
    def collective(self, w):
        lanes = list(range(32 * w, 32 * w + 32))
        pcs = {self.pc[t] for t in lanes}
        if len(pcs) != 1:
            raise SimError('warp %d diverged at a collective: pcs %s' % (w, sorted(pcs)))
        pc = pcs.pop()
        op, ops, guard, stmt = self.k.ins[pc]
        if guard is not None:
            ps = {bool(self.val(t, guard[1])) != guard[0] for t in lanes}
            if len(ps) != 1:
                raise SimError('non-uniform guard on collective ' + stmt)
            if not ps.pop():
                for t in lanes:
                    self.pc[t] += 1
                return
        self.executed += 32
        if op.startswith('bar.warp.sync'):
            pass
        elif op.startswith('ldmatrix'):
            trans = '.trans' in op
            dsts = [x.strip() for x in ops[0][1:-1].split(',')]
            addrs = [self.addr(t, ops[1]) for t in lanes]
            mats = []
            for i in range(4):
                rows = []
                for r in range(8):
                    a = addrs[8 * i + r]
                    if a % 16:
                        raise SimError('ldmatrix row address %d misaligned' % a)
                    rows.append(np.frombuffer(self.sh_read(a, 16), dtype=np.uint16))
                mats.append(np.array(rows))
            for li, t in enumerate(lanes):
                for i in range(4):
                    m = mats[i]
                    if trans:
                        lo, hi = m[2 * (li % 4)][li // 4], m[2 * (li % 4) + 1][li // 4]
                    else:
                        lo, hi = m[li // 4][2 * (li % 4)], m[li // 4][2 * (li % 4) + 1]
                    self.setr(t, dsts[i], int(lo) | int(hi) << 16)
        elif op.startswith('mma'):
            D = [x.strip() for x in ops[0][1:-1].split(',')]
            Ar = [x.strip() for x in ops[1][1:-1].split(',')]
            Br = [x.strip() for x in ops[2][1:-1].split(',')]
            Cr = [x.strip() for x in ops[3][1:-1].split(',')]
            A = np.zeros((16, 16), np.float32)
            B = np.zeros((16, 8), np.float32)
            C = np.zeros((16, 8), np.float32)
            for li, t in enumerate(lanes):
                g, c = li >> 2, li & 3
                a = [self.val(t, x) for x in Ar]
                b = [self.val(t, x) for x in Br]
                cc = [f32(self.val(t, x)) for x in Cr]
                for (r0, c0), v in zip(((g, 2 * c), (g + 8, 2 * c), (g, 2 * c + 8), (g + 8, 2 * c + 8)), a):
                    A[r0][c0], A[r0][c0 + 1] = f16(v), f16(v >> 16)
                for k0, v in zip((2 * c, 2 * c + 8), b):
                    B[k0][g], B[k0 + 1][g] = f16(v), f16(v >> 16)
                C[g][2 * c], C[g][2 * c + 1], C[g + 8][2 * c], C[g + 8][2 * c + 1] = cc
            Dm = (A.astype(np.float64) @ B.astype(np.float64) + C.astype(np.float64)).astype(np.float32)
            for li, t in enumerate(lanes):
                g, c = li >> 2, li & 3
                vals = (Dm[g][2 * c], Dm[g][2 * c + 1], Dm[g + 8][2 * c], Dm[g + 8][2 * c + 1])
                for d, v in zip(D, vals):
                    self.setr(t, d, bits32(v))
        elif op.startswith('shfl.sync.bfly'):
            src = [self.val(t, ops[1]) for t in lanes]
            for li, t in enumerate(lanes):
                self.setr(t, ops[0], src[li ^ self.val(t, ops[2])])
        elif op.startswith('vote.sync.all.pred'):
            r = all(self.val(t, ops[1]) for t in lanes)
            for t in lanes:
                self.setr(t, ops[0], int(r))
        else:
            raise SimError('collective ' + stmt)
        for t in lanes:
            self.pc[t] += 1

    def run(self, max_steps=10 ** 9):
        """Warps race: a random warp runs until its lanes block (a collective runs as soon as
        all 32 lanes reach it), so a missing barrier shows up as stale or clobbered data."""
        nw = self.n // 32
        while True:
            live = [w for w in range(nw)
                    if not all(self.done[t] or self.kind(t) == 'bar' for t in range(32 * w, 32 * w + 32))]
            if not live:
                if all(self.done):
                    return
                if any(self.done):
                    raise SimError('bar.sync with exited threads')
                for t in range(self.n):
                    self.pc[t] += 1
                continue
            w = self.rng.choice(live)
            lanes = range(32 * w, 32 * w + 32)
            for t in lanes:
                self.run_thread(t)
            if all(not self.done[t] and self.kind(t) == 'coll' for t in lanes):
                self.collective(w)
                continue
            if all(self.done[t] or self.kind(t) == 'bar' for t in lanes):
                continue
            states = {}
            for t in lanes:
                states.setdefault((self.done[t], self.kind(t), self.pc[t]), []).append(t)
            raise SimError('warp %d split between a collective and a barrier/exit: %s' % (
                w, '; '.join('%s: %d lanes' % (k, len(v)) for k, v in states.items())))

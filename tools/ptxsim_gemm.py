#!/usr/bin/env python3
"""ptxsim_gemm.py - runs ptx/gemm.ptx (tome_gemm_cvt + tome_gemm) in tools/ptxsim.py on small
shapes and checks every output against the CPU reference, without a GPU.

    python3 tools/ptxsim_gemm.py [--all] [PTX]      (from the repository root; PTX default
                                                    ptx/gemm.ptx)

The reference: lib/quant.c's tq_quantize / tq_dequantize (compiled here into a temporary
shared library, called through ctypes), x and the dequantised W rounded to f16 (bf16 for BF16
weights) as the kernel rounds them, products summed exactly; tolerance (K/16 + 2) 2^-22 of
sum |w x| plus 2^-22 of the epilogue's magnitudes - tests/test_cuda_gemm.c's tight bound.
The cases cover every weight type, rows and columns off the 128 tile (several CTAs), Q8_0 /
Q6_K rows that are not 16-byte multiples (misaligned windows, zero-fill at the matrix's end),
a weight at an offset, bias, a separate and an in-place residual. The default set takes about
a minute on one core; --all about three. Exit 0 when every case matches, 1 otherwise.

The interpreter (the first half of this file; self-contained, no numpy) models each thread's
registers (bit patterns of their declared width) and pc; a warp runs the lanes with the lowest
pc first, so forward skips reconverge; ldmatrix.x4 and mma.sync.m16n8k16 (f16/bf16 -> f32) are
warp-collective with the PTX ISA's fragment layouts (as this file and tests/fake_cuda.c read
them: a misreading of the ISA would fool both) and need all 32 lanes converged; bar.sync waits
for every warp of the CTA (warps run in order, so a missing barrier shows as stale data);
cp.async reads global memory at issue (zero-filling past src-size) and lands in shared memory
only at the issuing thread's wait_group / wait_all; global accesses are checked against the
allocations, shared ones against the dynamic size and alignment. f32 arithmetic rounds like
the hardware (.rn); an mma sums its 16 products exactly and rounds once when adding C (the
hardware's internal order differs in the last bits). Not modelled: timing, bank conflicts,
instructions outside gemm.ptx's subset (they stop the run as "unsupported"). tools/ptxsim.py
is a separate, numpy-based interpreter for the FlashAttention kernels.
"""
import bisect, ctypes, math, os, random, re, struct, subprocess, sys, tempfile, time

# ---- the interpreter -------------------------------------------------------------------------


MASK = {1: 1, 16: 0xFFFF, 32: 0xFFFFFFFF, 64: (1 << 64) - 1}

def f32(b): return struct.unpack('<f', struct.pack('<I', b & 0xFFFFFFFF))[0]
def bits32(x):
    try: return struct.unpack('<I', struct.pack('<f', x))[0]
    except OverflowError: return 0x7F800000 if x > 0 else 0xFF800000
def f16(b): return struct.unpack('<e', struct.pack('<H', b & 0xFFFF))[0]
def bits16(x):
    try: return struct.unpack('<H', struct.pack('<e', x))[0]
    except OverflowError: return 0x7C00 if x > 0 else 0xFC00
def bf16(b): return f32((b & 0xFFFF) << 16)
def bitsbf16(x):
    u = bits32(x)
    if (u & 0x7FFFFFFF) > 0x7F800000: return (u >> 16) | 64
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
def sgn(v, w): return v - (1 << w) if v >> (w - 1) & 1 else v

class SimError(Exception): pass

class Mem:
    def __init__(self): self.bases, self.bufs, self.next = [], {}, 1 << 32
    def alloc(self, n, data=None):
        b = self.next; self.next += (n + 4095) // 4096 * 4096 + 4096
        self.bases.append(b); self.bufs[b] = bytearray(data) if data is not None else bytearray(b'\xa5' * n)
        return b
    def find(self, a, n, what):
        i = bisect.bisect_right(self.bases, a) - 1
        if i >= 0:
            b = self.bases[i]; buf = self.bufs[b]
            if a - b + n <= len(buf): return buf, a - b
        raise SimError('%s: global access 0x%x + %d outside every allocation' % (what, a, n))
    def read(self, a, n, what='load'):
        buf, o = self.find(a, n, what); return bytes(buf[o:o + n])
    def write(self, a, data, what='store'):
        buf, o = self.find(a, len(data), what); buf[o:o + len(data)] = data

def split_ops(s):
    out, depth, cur = [], 0, ''
    for ch in s:
        if ch in '[{': depth += 1
        if ch in ']}': depth -= 1
        if ch == ',' and depth == 0: out.append(cur.strip()); cur = ''
        else: cur += ch
    if cur.strip(): out.append(cur.strip())
    return out

class Kernel:
    def __init__(self, text, entry):
        text = re.sub(r'//[^\n]*', '', text)
        m = re.search(r'\.entry\s+%s\s*\((.*?)\)(.*?)\{' % entry, text, re.S)
        if not m: raise SimError('no entry ' + entry)
        self.params = re.findall(r'\.param\s+\.(\w+)\s+(\w+)', m.group(1))
        self.pnames = set(n for _, n in self.params)
        start = m.end(); depth = 1; i = start
        while depth:
            if text[i] == '{': depth += 1
            elif text[i] == '}': depth -= 1
            i += 1
        body = text[start:i - 1]
        self.width, self.insts, self.labels = {}, [], {}
        for stmt in re.split(r';', body):
            stmt = stmt.strip()
            while True:  # labels
                lm = re.match(r'^([A-Za-z_]\w*):\s*', stmt)
                if not lm: break
                self.labels[lm.group(1)] = len(self.insts); stmt = stmt[lm.end():].strip()
            if not stmt: continue
            if stmt.startswith('.reg'):
                rm = re.match(r'\.reg\s+\.(\w+)\s+(.*)', stmt, re.S)
                t = rm.group(1); w = 1 if t == 'pred' else int(re.sub(r'\D', '', t))
                for nm in split_ops(rm.group(2)):
                    nm = nm.strip(); am = re.match(r'(%\w+)<(\d+)>', nm)
                    if am:
                        for k in range(int(am.group(2))): self.width[am.group(1) + str(k)] = w
                    else: self.width[nm] = w
                continue
            if stmt.startswith('.'): continue
            guard = None
            gm = re.match(r'^@(!?)(%\w+)\s+', stmt)
            if gm: guard = (gm.group(1) == '!', gm.group(2)); stmt = stmt[gm.end():]
            parts = stmt.split(None, 1)
            self.insts.append((guard, parts[0], split_ops(parts[1]) if len(parts) > 1 else [], stmt))

class Lane:
    __slots__ = ('r', 'pc', 'done', 'pend', 'groups', 'tid')
    def __init__(self, tid): self.r, self.pc, self.done, self.pend, self.groups, self.tid = {}, 0, False, [], [], tid

class CTA:
    def __init__(self, k, mem, params, ctaid, nctaid, ntid, smem_bytes):
        self.k, self.mem, self.params, self.ctaid, self.nctaid, self.ntid = k, mem, params, ctaid, nctaid, ntid
        self.smem = bytearray(b'\x5a' * smem_bytes)
        self.lanes = [Lane(t) for t in range(ntid)]
        self.count = 0

    def val(self, ln, op, w=32):
        if op.startswith('!'): return 1 - self.val(ln, op[1:], 1)
        if op.startswith('%'):
            if op in ln.r: return ln.r[op]
            sp = {'%tid.x': ln.tid, '%ntid.x': self.ntid, '%ctaid.x': self.ctaid[0], '%ctaid.y': self.ctaid[1],
                  '%nctaid.x': self.nctaid[0], '%nctaid.y': self.nctaid[1]}
            if op in sp: return sp[op]
            if op in self.k.width: raise SimError('read of unset register %s (pc %d: %s)' % (op, ln.pc, self.k.insts[ln.pc][3]))
            raise SimError('unknown operand ' + op)
        if op.startswith('0f'): return int(op[2:], 16)
        if op == 'gemm_smem': return 0
        return int(op, 0) & MASK[w]

    def setr(self, ln, name, v):
        w = self.k.width[name]; ln.r[name] = v & MASK[w]

    def addr(self, ln, op):
        m = re.match(r'\[\s*([%\w]+)\s*(?:\+\s*(-?\d+))?\s*\]', op)
        base = m.group(1); off = int(m.group(2) or 0)
        if base in self.k.pnames: return ("param", base)
        return self.val(ln, base, 64) + off

    def sread(self, a, n):
        if a < 0 or a + n > len(self.smem): raise SimError('shared read 0x%x + %d out of bounds' % (a, n))
        return self.smem[a:a + n]
    def swrite(self, a, data):
        if a < 0 or a + len(data) > len(self.smem): raise SimError('shared write 0x%x + %d out of bounds' % (a, len(data)))
        self.smem[a:a + len(data)] = data

    def run(self):
        nw = (self.ntid + 31) // 32
        at_bar = [False] * nw
        while True:
            progressed = False
            for w in range(nw):
                if at_bar[w]: continue
                r = self.run_warp(w)
                if r == 'bar': at_bar[w] = True
                progressed = True
            if all(l.done for l in self.lanes): return
            if all(at_bar[w] or all(l.done for l in self.lanes[32 * w:32 * w + 32]) for w in range(nw)):
                if any(all(l.done for l in self.lanes[32 * w:32 * w + 32]) for w in range(nw)):
                    raise SimError('bar.sync with exited warps')
                at_bar = [False] * nw
            elif not progressed: raise SimError('deadlock')

    def run_warp(self, w):
        lanes = self.lanes[32 * w:32 * w + 32]
        k = self.k
        while True:
            act = [l for l in lanes if not l.done]
            if not act: return 'done'
            pc = min(l.pc for l in act)
            grp = [l for l in act if l.pc == pc]
            guard, opc, ops, txt = k.insts[pc]
            self.count += len(grp)
            if opc.startswith('ldmatrix') or opc.startswith('mma') or opc == 'bar.sync':
                if len(grp) != 32: raise SimError('warp-collective %s with %d lanes converged' % (txt, len(grp)))
                if guard: raise SimError('guarded collective')
                if opc == 'bar.sync':
                    for l in grp: l.pc += 1
                    return 'bar'
                if opc.startswith('ldmatrix'): self.ldmatrix(grp, ops)
                else: self.mma(grp, opc, ops)
                for l in grp: l.pc += 1
                continue
            for l in grp:
                if guard:
                    neg, p = guard
                    if bool(self.val(l, p, 1)) == neg: l.pc += 1; continue
                self.exec1(l, opc, ops, txt)

    def exec1(self, l, opc, ops, txt):
        k = self.k; p = opc.split('.'); o = p[0]
        if o in ('bra',):
            l.pc = k.labels[ops[0]]; return
        l.pc += 1
        if o == 'ret': l.done = True; return
        if o == 'ld' and p[1] == 'param':
            a = self.addr(l, ops[1]); self.setr(l, ops[0], self.params[a[1]]); return
        if o == 'cvta': self.setr(l, ops[0], self.val(l, ops[1], 64)); return
        if o == 'mov':
            self.setr(l, ops[0], self.val(l, ops[1], k.width.get(ops[0], 32))); return
        t = p[-1]; w = 1 if t == 'pred' else int(re.sub(r'\D', '', t) or 32)
        if o in ('add', 'sub', 'mul', 'min', 'max', 'and', 'or', 'xor', 'shl', 'shr') and t != 'f32':
            a = self.val(l, ops[1], w); b = self.val(l, ops[2], 32 if o in ('shl', 'shr') else w)
            if o == 'add': v = a + b
            elif o == 'sub': v = a - b
            elif o == 'mul':
                if p[1] == 'wide': v = a * b
                else: v = a * b
            elif o in ('min', 'max'):
                if t[0] == 's': a, b = sgn(a, w), sgn(b, w)
                v = min(a, b) if o == 'min' else max(a, b)
            elif o == 'and': v = a & b
            elif o == 'or': v = a | b
            elif o == 'xor': v = a ^ b
            elif o == 'shl': v = a << b if b < w else 0
            elif o == 'shr':
                if t[0] == 's': v = sgn(a, w) >> min(b, w - 1)
                else: v = a >> b if b < w else 0
            self.setr(l, ops[0], v); return
        if o in ('add', 'sub', 'mul') and t == 'f32':
            a = f32(self.val(l, ops[1])); b = f32(self.val(l, ops[2]))
            v = a + b if o == 'add' else a - b if o == 'sub' else a * b
            self.setr(l, ops[0], bits32(v)); return
        if o == 'selp':
            self.setr(l, ops[0], self.val(l, ops[1], w) if self.val(l, ops[3], 1) else self.val(l, ops[2], w)); return
        if o == 'prmt':
            a = self.val(l, ops[1]); b = self.val(l, ops[2]); c = self.val(l, ops[3])
            src = (b << 32) | a; v = 0
            for kk in range(4):
                n = (c >> (4 * kk)) & 15; byte = (src >> (8 * (n & 7))) & 0xFF
                if n & 8: byte = 0xFF if byte & 0x80 else 0
                v |= byte << (8 * kk)
            self.setr(l, ops[0], v); return
        if o == 'setp':
            cmp = p[1]; a = self.val(l, ops[1], w); b = self.val(l, ops[2], w)
            if t[0] == 's': a, b = sgn(a, w), sgn(b, w)
            v = {'eq': a == b, 'ne': a != b, 'lt': a < b, 'le': a <= b, 'gt': a > b, 'ge': a >= b}[cmp]
            self.setr(l, ops[0], int(v)); return
        if o == 'and' and t == 'pred':
            self.setr(l, ops[0], self.val(l, ops[1], 1) & self.val(l, ops[2], 1)); return
        if o == 'cvt':
            dt, st = p[-2], p[-1]
            if dt == 'u32' and st == 'u64': self.setr(l, ops[0], self.val(l, ops[1], 64)); return
            if dt == 'u64' and st == 'u32': self.setr(l, ops[0], self.val(l, ops[1])); return
            if dt == 'f32' and st == 's32': self.setr(l, ops[0], bits32(float(sgn(self.val(l, ops[1]), 32)))); return
            if dt == 'f32' and st == 'u32': self.setr(l, ops[0], bits32(float(self.val(l, ops[1])))); return
            if dt == 'f32' and st == 'f16': self.setr(l, ops[0], bits32(f16(self.val(l, ops[1], 16)))); return
            if dt == 'f16x2':
                a = f32(self.val(l, ops[1])); b = f32(self.val(l, ops[2]))
                self.setr(l, ops[0], bits16(a) << 16 | bits16(b)); return
            if dt == 'bf16x2':
                a = f32(self.val(l, ops[1])); b = f32(self.val(l, ops[2]))
                self.setr(l, ops[0], bitsbf16(a) << 16 | bitsbf16(b)); return
            raise SimError('cvt ' + txt)
        if o == 'ld':
            a = self.addr(l, ops[1])
            if p[1] == 'shared' and p[2] == 'v4':
                if a % 16: raise SimError('misaligned ld.shared.v4 ' + txt)
                regs = [r.strip() for r in ops[0].strip('{}').split(',')]
                for i, rg in enumerate(regs): self.setr(l, rg, int.from_bytes(self.sread(a + 4 * i, 4), 'little'))
                return
            if p[1] == 'shared':
                n = {'b16': 2, 'u16': 2, 'u8': 1, 's8': 1, 'b32': 4}[t]
                if a % n: raise SimError('misaligned shared load ' + txt)
                raw = int.from_bytes(self.sread(a, n), 'little')
                if t == 's8': raw = sgn(raw, 8)
                self.setr(l, ops[0], raw); return
            if p[1] == 'global':
                if a % 4: raise SimError('misaligned global load ' + txt)
                self.setr(l, ops[0], int.from_bytes(self.mem.read(a, 4, txt), 'little')); return
        if o == 'st' and p[2] == 'v4':
            a = self.addr(l, ops[0])
            if a % 16: raise SimError('misaligned st.shared.v4 ' + txt)
            for i, rg in enumerate(r.strip() for r in ops[1].strip('{}').split(',')):
                self.swrite(a + 4 * i, self.val(l, rg).to_bytes(4, 'little'))
            return
        if o == 'st':
            a = self.addr(l, ops[0]); v = self.val(l, ops[1])
            if a % 4: raise SimError('misaligned store ' + txt)
            if p[1] == 'shared': self.swrite(a, v.to_bytes(4, 'little')); return
            self.mem.write(a, v.to_bytes(4, 'little'), txt); return
        if o == 'cp':
            if p[2] == 'commit_group': l.groups.append(len(l.pend)); return
            if p[2] in ('wait_group', 'wait_all'):
                n = 0 if p[2] == 'wait_all' else int(ops[0])
                if len(l.groups) > n:
                    upto = l.groups[len(l.groups) - n - 1]
                    for dst, data in l.pend[:upto]: self.swrite(dst, data)
                    l.pend = l.pend[upto:]; l.groups = [g - upto for g in l.groups[len(l.groups) - n:]]
                if p[2] == 'wait_all':
                    for dst, data in l.pend: self.swrite(dst, data)
                    l.pend, l.groups = [], []
                return
            dst = self.addr(l, ops[0]); src = self.addr(l, ops[1]); size = int(ops[2])
            sz = self.val(l, ops[3]) if len(ops) > 3 else size
            if dst % 16 or src % 16: raise SimError('cp.async misaligned dst 0x%x src 0x%x' % (dst, src))
            if sz > size: raise SimError('cp.async src-size > cp-size')
            data = (self.mem.read(src, sz, 'cp.async') if sz else b'') + bytes(size - sz)
            l.pend.append((dst, data)); return
        raise SimError('unsupported: ' + txt)

    def ldmatrix(self, grp, ops):
        regs = ops[0].strip('{}').split(',')
        regs = [r.strip() for r in regs]
        addrs = [self.addr(l, ops[1]) for l in grp]
        for a in addrs:
            if a % 16: raise SimError('ldmatrix row address misaligned')
        for li, l in enumerate(grp):
            for j in range(4):
                a = addrs[8 * j + (li >> 2)] + 4 * (li & 3)
                self.setr(l, regs[j], int.from_bytes(self.sread(a, 4), 'little'))

    def mma(self, grp, opc, ops):
        bf = '.bf16.' in opc
        conv = bf16 if bf else f16
        d = [r.strip() for r in ops[0].strip('{}').split(',')]
        a = [r.strip() for r in ops[1].strip('{}').split(',')]
        b = [r.strip() for r in ops[2].strip('{}').split(',')]
        c = [r.strip() for r in ops[3].strip('{}').split(',')]
        A = [[0.0] * 16 for _ in range(16)]; B = [[0.0] * 8 for _ in range(16)]
        for li, l in enumerate(grp):
            g, q = li >> 2, li & 3
            for r in range(4):
                v = l.r[a[r]]
                for h in range(2): A[g + 8 * (r & 1)][2 * q + h + 8 * (r >> 1)] = conv(v >> (16 * h))
            for r in range(2):
                v = l.r[b[r]]
                for h in range(2): B[2 * q + h + 8 * r][g] = conv(v >> (16 * h))
        out = []
        for li, l in enumerate(grp):
            g, q = li >> 2, li & 3
            vals = []
            for i in range(4):
                row, col = g + 8 * (i >> 1), 2 * q + (i & 1)
                s = math.fsum(A[row][kk] * B[kk][col] for kk in range(16))
                vals.append(bits32(f32(l.r[c[i]]) + s))
            out.append(vals)
        for li, l in enumerate(grp):
            for i in range(4): self.setr(l, d[i], out[li][i])

def launch(k, mem, args, grid, block, smem):
    params = {}
    for (t, name), v in zip(k.params, args): params[name] = v
    total = 0
    for y in range(grid[1]):
        for x in range(grid[0]):
            cta = CTA(k, mem, params, (x, y), grid, block, smem)
            cta.run(); total += cta.count
    return total

# ---- the GEMM cases ----------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def quant_lib(tmp):
    so = os.path.join(tmp, 'libtq.so')
    srcs = [os.path.join(ROOT, 'lib', f) for f in ('quant.c', 'util.c', 'gguf.c', 'stb_ds.c', 'arch.c')]
    subprocess.check_call(['cc', '-std=c11', '-D_GNU_SOURCE', '-I' + os.path.join(ROOT, 'lib'), '-O2', '-shared',
                           '-fPIC', '-o', so] + srcs + ['-lm'])
    q = ctypes.CDLL(so)
    q.tq_quantize.restype = ctypes.c_size_t
    q.tq_quantize.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    q.tq_dequantize.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    q.ggml_row_size.restype = ctypes.c_size_t
    q.ggml_row_size.argtypes = [ctypes.c_uint32, ctypes.c_int64]
    return q

def run_case(Q, KC, KG, type_, M, N, K, bias=0, res=0, seed=1, woff=0):
    rnd = random.Random(seed)
    rb = Q.ggml_row_size(type_, K)
    wf = (ctypes.c_float * (N * K))(*[rnd.uniform(-1, 1) + 0.01 for _ in range(N * K)])
    wq = (ctypes.c_uint8 * (rb * N))()
    for r in range(N):
        Q.tq_quantize(type_, ctypes.byref(wf, 4 * r * K), ctypes.byref(wq, rb * r), K)
        Q.tq_dequantize(type_, ctypes.byref(wq, rb * r), ctypes.byref(wf, 4 * r * K), K)
    r32 = lambda v: f32(bits32(v))  # what a float buffer holds
    x = [r32(rnd.uniform(-2, 2) + 0.01) for _ in range(M * K)]
    bv = [r32(rnd.uniform(-.5, .5)) for _ in range(N)]
    rv = [r32(rnd.uniform(-4, 4)) for _ in range(M * N)]
    mem = Mem()
    dw = mem.alloc(rb * N + woff, bytes(woff) + bytes(wq)) + woff  # exact size: overreads fault
    dx = mem.alloc(4 * M * K, struct.pack('<%df' % (M * K), *x))
    ds = mem.alloc(2 * M * K)
    dy = mem.alloc(4 * M * N, struct.pack('<%df' % (M * N), *rv) if res == 2 else None)
    db = mem.alloc(4 * N, struct.pack('<%df' % N, *bv)) if bias else 0
    dr = mem.alloc(4 * M * N, struct.pack('<%df' % (M * N), *rv)) if res == 1 else dy if res == 2 else 0
    bf = type_ == 30
    t0 = time.time()
    launch(KC, mem, [ds, dx, M * K // 2, int(bf)], (2, 1), 256, 0)
    cnt = launch(KG, mem, [dy, ds, dw, db, dr, rb, type_, M, N, K], ((N + 127) // 128, (M + 127) // 128), 256, 90112)
    y = struct.unpack('<%df' % (M * N), mem.read(dy, 4 * M * N))
    r16 = (lambda v: bf16(bitsbf16(v))) if bf else (lambda v: f16(bits16(v)))
    xr = [r16(v) for v in x]
    wr = [r16(v) for v in wf]
    worst, bad = 0.0, 0
    for t in range(M):
        for r in range(N):
            s = math.fsum(wr[r * K + k] * xr[t * K + k] for k in range(K))
            ab = math.fsum(abs(wf[r * K + k] * x[t * K + k]) for k in range(K))
            add = (bv[r] if bias else 0) + (rv[t * N + r] if res else 0)
            g = y[t * N + r]
            tol = (K / 16 + 2) * 2 ** -22 * ab + 2 ** -22 * (abs(add) + abs(s) + abs(g) + (abs(bv[r]) if bias else 0))
            e = abs(g - (s + add))
            if not e <= tol:
                bad += 1
                if bad <= 4:
                    print('   y[%d][%d] = %r, want %r (tolerance %g)' % (t, r, g, s + add, tol))
            worst = max(worst, e / tol)
    print('type %2d M=%d N=%d K=%d bias=%d res=%d offset=%d: %s, worst %.3f of the bound (%d lane-instructions, '
          '%.1f s)' % (type_, M, N, K, bias, res, woff, 'ok' if not bad else 'FAIL (%d outputs)' % bad, worst, cnt,
                       time.time() - t0))
    sys.stdout.flush()
    return not bad

# (type, M, N, K, bias, res, seed, weight offset)
QUICK = [(1, 20, 130, 96, 1, 1, 1, 0), (30, 3, 200, 64, 1, 0, 2, 0), (8, 7, 33, 32, 0, 0, 3, 0),
         (8, 17, 130, 96, 1, 1, 5, 0), (12, 4, 20, 256, 0, 2, 6, 0), (14, 4, 20, 256, 1, 0, 7, 0)]
MORE = [(8, 6, 50, 64, 0, 0, 9, 32), (12, 9, 129, 512, 1, 2, 10, 0), (14, 9, 40, 512, 1, 1, 11, 0),
        (1, 130, 40, 64, 1, 2, 12, 0)]

def main():
    args = [a for a in sys.argv[1:] if a != '--all']
    ptx = args[0] if args else os.path.join(ROOT, 'ptx', 'gemm.ptx')
    text = open(ptx).read()
    KC, KG = Kernel(text, 'tome_gemm_cvt'), Kernel(text, 'tome_gemm')
    with tempfile.TemporaryDirectory() as tmp:
        Q = quant_lib(tmp)
        cases = QUICK + (MORE if '--all' in sys.argv else [])
        ok = sum(run_case(Q, KC, KG, *c) for c in cases)
    print('%d of %d cases match' % (ok, len(cases)))
    return 0 if ok == len(cases) else 1

if __name__ == '__main__':
    sys.exit(main())

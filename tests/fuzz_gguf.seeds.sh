#!/usr/bin/env bash
# fuzz_gguf.seeds.sh SEEDDIR — writes small, complete, valid GGUF files for the GGUF fuzzer.
#
# build.sh's fuzz stage seeds with the first 64 KiB of each real GGUF, which are all truncated
# (invalid past the cut). These seeds are whole files under 64 KiB, so the fuzzer starts from
# inputs that reach the tensor table, the data section checks and the hyper-parameter code:
# every value type, nested arrays, v2 and v3, alignments 1..1024, tensors of several types,
# tiny llama / qwen2 / qwen3 / phi3 models (metadata + tensor tables that pass arch.c's
# checks), RoPE scaling keys. Needs only bash and python3 (the generator is below; it is a
# plain GGUF writer written for this script, no gguf package).
set -euo pipefail
out=${1:?usage: fuzz_gguf.seeds.sh SEEDDIR}
mkdir -p "$out"
python3 - "$out" <<'PY'
import os, struct, sys

out = sys.argv[1]
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: '<B', I8: '<b', U16: '<H', I16: '<h', U32: '<I', I32: '<i', F32: '<f', BOOL: '<B',
       U64: '<Q', I64: '<q', F64: '<d'}
# ggml type -> (block elements, block bytes)
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         12: (256, 144), 13: (256, 176), 14: (256, 210), 16: (256, 66), 30: (1, 2)}

def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack('<Q', len(b)) + b

def val(t, v):
    """Serialized value (without its type tag) of GGUF type t."""
    if t in FMT:
        return struct.pack(FMT[t], v)
    if t == STR:
        return s(v)
    et, items = v  # array: (element type, list)
    return struct.pack('<IQ', et, len(items)) + b''.join(val(et, x) for x in items)

def gguf(kvs, tensors=(), version=3, align=32, fill=0x3c):
    """kvs: [(key, type, value)], tensors: [(name, [ne...], ggml type)]."""
    h = b'GGUF' + struct.pack('<IQQ', version, len(tensors), len(kvs))
    for k, t, v in kvs:
        h += s(k) + struct.pack('<I', t) + val(t, v)
    off, offs = 0, []
    for name, ne, ty in tensors:
        blk, size = TYPES[ty]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // blk * size
        off = (off + align - 1) // align * align
        offs.append((off, nbytes))
        h += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', d) for d in ne)
        h += struct.pack('<IQ', ty, off)
        off += nbytes
    h += b'\0' * ((-len(h)) % align)
    data = bytearray(off)
    for i, (o, nb) in enumerate(offs):  # distinct, non-zero bytes per tensor
        for j in range(nb):
            data[o + j] = (fill + i * 7 + j) & 0xff
    return h + bytes(data)

def write(name, blob):
    assert len(blob) <= 65536, (name, len(blob))
    with open(os.path.join(out, 'seed-' + name + '.gguf'), 'wb') as f:
        f.write(blob)

# --- metadata only ---------------------------------------------------------------------
write('empty-v3', gguf([]))
write('empty-v2', gguf([], version=2))
scalars = [('u8', U8, 200), ('i8', I8, -7), ('u16', U16, 65535), ('i16', I16, -300),
           ('u32', U32, 4000000000), ('i32', I32, -5), ('f32', F32, 0.5), ('bool', BOOL, 1),
           ('str', STR, 'h\u00e9llo'), ('u64', U64, 2**63 + 5), ('i64', I64, -2**40),
           ('f64', F64, -2.25), ('empty', STR, '')]
write('scalars', gguf(scalars))
arrays = [('a.' + k, ARR, (t, [v, v, v])) for k, t, v in scalars]
arrays.append(('a.nested', ARR, (ARR, [(STR, ['x', 'yz']), (STR, []), (STR, ['w'])])))
arrays.append(('a.nested2', ARR, (ARR, [(ARR, [(I32, [1, 2])]), (ARR, [])])))
arrays.append(('a.none', ARR, (F32, [])))
write('arrays-v2', gguf(arrays, version=2))
write('arrays-v3', gguf(arrays))

# --- tensors of several types, several alignments ------------------------------------------
ts = [('f32', [8, 3], 0), ('f16', [16], 1), ('q8', [64, 2], 8), ('q4', [32], 2),
      ('q4k', [256], 12), ('q6k', [256], 14), ('bf16', [4, 2, 2, 2], 30), ('iq2', [256], 16)]
for a in (1, 8, 32, 64, 1024):
    kv = [('general.alignment', U32, a)] if a != 32 else []
    write('tensors-align%d' % a, gguf(kv + [('general.architecture', STR, 'x')], ts, align=a))
write('tensors-v2', gguf([('k', U8, 1)], ts[:3], version=2))

# --- tiny models per architecture: metadata + the tensor table arch.c checks --------------
def model(arch, E=32, H=4, HKV=2, F=32, V=16, L=1, extra=(), ty=0, phi=False, qwen3=False,
          tied=False, rope_freqs=False, longrope=False):
    hd = E // H
    kv = [('general.architecture', STR, arch), ('general.name', STR, 'seed-' + arch),
          (arch + '.block_count', U32, L), (arch + '.embedding_length', U32, E),
          (arch + '.feed_forward_length', U32, F), (arch + '.attention.head_count', U32, H),
          (arch + '.attention.head_count_kv', U32, HKV), (arch + '.context_length', U32, 256),
          (arch + '.attention.layer_norm_rms_epsilon', F32, 1e-5),
          (arch + '.rope.freq_base', F32, 10000.0), (arch + '.rope.dimension_count', U32, hd),
          ('tokenizer.ggml.model', STR, 'llama'), ('tokenizer.ggml.pre', STR, 'default'),
          ('tokenizer.ggml.tokens', ARR, (STR, ['<unk>', '<s>', '</s>'] + ['t%d' % i for i in range(V - 3)])),
          ('tokenizer.ggml.scores', ARR, (F32, [0.0] * V)),
          ('tokenizer.ggml.token_type', ARR, (I32, [2, 3, 3] + [1] * (V - 3))),
          ('tokenizer.ggml.bos_token_id', U32, 1), ('tokenizer.ggml.eos_token_id', U32, 2),
          ('tokenizer.chat_template', STR, "{% for m in messages %}{{ m['content'] }}{% endfor %}")]
    kv += [(arch + '.' + k, t, v) for k, t, v in extra]
    q, k_, o = H * hd, HKV * hd, H * hd
    t = [('token_embd.weight', [E, V], ty), ('output_norm.weight', [E], 0)]
    if not tied:
        t.append(('output.weight', [E, V], ty))
    if rope_freqs:
        t.append(('rope_freqs.weight', [hd // 2], 0))
    if longrope:
        t += [('rope_factors_long.weight', [hd // 2], 0), ('rope_factors_short.weight', [hd // 2], 0)]
    for l in range(L):
        p = 'blk.%d.' % l
        t += [(p + 'attn_norm.weight', [E], 0), (p + 'ffn_norm.weight', [E], 0)]
        if phi:
            t += [(p + 'attn_qkv.weight', [E, q + 2 * k_], ty), (p + 'ffn_up.weight', [E, 2 * F], ty)]
        else:
            t += [(p + 'attn_q.weight', [E, q], ty), (p + 'attn_k.weight', [E, k_], ty),
                  (p + 'attn_v.weight', [E, k_], ty), (p + 'ffn_gate.weight', [E, F], ty),
                  (p + 'ffn_up.weight', [E, F], ty)]
        if arch == 'qwen2':
            t += [(p + 'attn_q.bias', [q], 0), (p + 'attn_k.bias', [k_], 0), (p + 'attn_v.bias', [k_], 0)]
        if qwen3:
            t += [(p + 'attn_q_norm.weight', [hd], 0), (p + 'attn_k_norm.weight', [hd], 0)]
        t += [(p + 'attn_output.weight', [o, E], ty), (p + 'ffn_down.weight', [F, E], ty if F % 32 == 0 else 0)]
    return gguf(kv, t)

write('llama-f32', model('llama', E=16, F=24, V=8, L=2, tied=True))
write('llama-q8', model('llama', E=64, F=96, V=32, ty=8, rope_freqs=True))
write('llama-yarn', model('llama', ty=1, extra=[
    ('rope.scaling.type', STR, 'yarn'), ('rope.scaling.factor', F32, 4.0),
    ('rope.scaling.original_context_length', U32, 64), ('rope.scaling.yarn_beta_fast', F32, 32.0),
    ('rope.scaling.yarn_beta_slow', F32, 1.0), ('attention.sliding_window', U32, 16)]))
write('qwen2', model('qwen2'))
write('qwen3', model('qwen3', qwen3=True, extra=[('attention.key_length', U32, 8),
                                                                  ('attention.value_length', U32, 8)]))
write('phi3', model('phi3', phi=True, longrope=True, extra=[
    ('rope.scaling.attn_factor', F32, 1.19), ('rope.scaling.original_context_length', U32, 64)]))
write('gpt2', gguf([('general.architecture', STR, 'gpt2'), ('gpt2.block_count', U32, 2),
                    ('gpt2.embedding_length', U32, 8), ('gpt2.attention.head_count', U32, 2),
                    ('tokenizer.ggml.tokens', ARR, (STR, ['a', 'b']))]))
PY

#!/usr/bin/env bash
# gpu.sh [GROUP...] — the one script a GPU machine runs: GPU-vs-CPU op checks (ops), end-to-end
# GPU vs CPU logits and greedy tokens (e2e), benchmarks of an 8B-shaped model (bench); a
# summary table last. Groups default to all three; the whole run stays under 5 minutes on an
# H200 (bench dominates: making the two 8B files takes most of it).
#
# Carrying the build to the device machine (it has no PCRE2 / jansson / compiler to spare):
#   1. here: ./build.sh unit device   (./tome and build/tests-rel link PCRE2 and jansson
#      statically, so they need only libc, libm, libdl and the driver's libcuda.so.1)
#   2. here: bash tests/gpu.sh prep   copies the few data files e2e needs into data/ (git-ignored,
#      about 37 MiB): models/stories260K.bin, models/tok512.bin and
#      models/llamacpp/tiny-gqa768-{Q8_0,Q4_K_M}.gguf from $TOME_DATA (default ../shared)
#   3. device: carry = ["tome", "build/tests-rel", "build/mkgguf", "build/llama2c2gguf", "build/lab_gemm",
#      "build/lab_attn", "data"]
#      (about 44 MiB, under the 64 MiB limit), command = "TOME_DATA=data bash tests/gpu.sh"
#      (or one group: "... tests/gpu.sh e2e"). The bench files are made on the device machine
#      in $TOME_BENCH_DIR (default /tmp/tome-gpu-bench), never carried.
#
# Groups:
#   ops    build/tests-rel gpu_op_ cuda_        every GPU op against the CPU reference
#   e2e    build/tests-rel gpu_e2e_             tests/test_device.c: stories260K (llama2c2gguf),
#          the llama.cpp Q8_0 / Q4_K_M files, mkgguf models of every arch and weight type, and
#          streaming; CPU --exact with the same f16 KV as the reference; then `tome run --gpu`
#          vs `--cpu --exact` greedy ids on stories260K through the CLI
#   bench  first build/lab_gemm --budget 40 (the tensor-core prefill GEMM, issue #11: validation,
#          then TFLOP/s on the 8B projection shapes at M = 4096, 16384, 512 for F16, BF16, Q8_0,
#          Q4_K weights; about 30-60 s; its summary is the "bench: GEMM lab" row), then
#          build/lab_attn (FlashAttention prefill, issue #10: CPU check, then TFLOP/s at S = 4K,
#          16K, 64K for f16 and q8 pages; the "bench: attention lab" row and its table), then
#          mkgguf 8B-shaped llama (32 layers, 4096 wide, 32/8 heads of 128, FF 14336, vocab
#          128256) as Q8_0 and Q4_K_M; `tome bench --gpu -p 256 -n 128 -r 2` (prefill 256, not
#          llama-bench's 512: the #8 matmul is a plain per-row kernel, fast prefill is issue #11),
#          then `tome bench --gpu -p 0 -n 128 --no-graphs` for decode without CUDA graphs
#   longctx the bench's 8B-shaped Q4_K_M file (made if absent); `tome plan --gpu -c max --kv q4`;
#          then build/tests-rel gpu_longctx_ (tests/test_device.c): the cache filled with
#          synthetic K/V written by the kernels (cuda_backend_fill_kv, no real prefill) to
#          128K, 1M and the largest context that fits, 8 decode steps timed at each, then
#          the decode attention alone (every layer's flash-decode + merge: KV TB/s); first a
#          short context (1024 positions, 64 steps) with CUDA graphs and with plain launches.
#          TOME_LONGCTX_KV (default q4) and TOME_LONGCTX_FILLS (default 131072,1048576,max)
#          pass through. Not in the default groups: run `tests/gpu.sh longctx` (about 1 min
#          after bench has made the file, about 3 without).
set -u
cd "$(dirname "$0")/.." || exit 1
TOME_DATA=${TOME_DATA:-../shared}
export TOME_DATA

if [ "${1:-}" = prep ]; then
  src=${TOME_DATA}
  [ "$src" = data ] && src=../shared
  mkdir -p data/models/llamacpp || exit 1
  for f in models/stories260K.bin models/tok512.bin models/llamacpp/tiny-gqa768-Q8_0.gguf \
           models/llamacpp/tiny-gqa768-Q4_K_M.gguf; do
    cp -f "$src/$f" "data/$f" || { echo "gpu.sh prep: cannot copy $src/$f" >&2; exit 2; }
  done
  du -sh data tome build/tests-rel build/mkgguf build/llama2c2gguf 2>/dev/null
  echo 'carry: ["tome", "build/tests-rel", "build/mkgguf", "build/llama2c2gguf", "build/lab_gemm", "build/lab_attn", "data"]'
  echo 'run:   TOME_DATA=data bash tests/gpu.sh'
  exit 0
fi

groups=${*:-ops e2e bench}
lrows=()
grows=()
arows=()
declare -A result
brows=()
t_start=$(date +%s)

summary_line() { echo "$1" | grep -E '^[0-9]+ passed' | tail -n 1; }

for g in $groups; do
  echo "=== $g"
  case $g in
    ops)
      if [ ! -x build/tests-rel ]; then result[ops]="missing build/tests-rel"; continue; fi
      out=$(build/tests-rel gpu_op_ cuda_ 2>&1); echo "$out"
      result[ops]=$(summary_line "$out") ;;
    e2e)
      if [ ! -x build/tests-rel ]; then result[e2e]="missing build/tests-rel"; continue; fi
      out=$(timeout 240 build/tests-rel gpu_e2e_ 2>&1); echo "$out"
      r=$(summary_line "$out")
      # the same through the CLI: greedy ids of `run --gpu` vs `run --cpu --exact`
      cli="cli: not run (stories260K or tools missing)"
      if [ -x ./tome ] && [ -x build/llama2c2gguf ] && [ -e "$TOME_DATA/models/stories260K.bin" ]; then
        sg=$(mktemp -d)/stories260K.gguf
        if build/llama2c2gguf "$TOME_DATA/models/stories260K.bin" "$TOME_DATA/models/tok512.bin" "$sg" >/dev/null 2>&1; then
          a=$(./tome run -m "$sg" -p "Once upon a time" -n 48 --temp 0 --ignore-eos --print-ids -q --gpu 2>&1)
          b=$(./tome run -m "$sg" -p "Once upon a time" -n 48 --temp 0 --ignore-eos --print-ids -q --cpu --exact --kv f16 2>&1)
          echo "gpu: $a"; echo "cpu: $b"
          if [ "$a" = "$b" ]; then cli="cli: 48 greedy ids identical"; else cli="cli: greedy ids DIFFER"; fi
          # q8/q4 pages (issue #9): a last-bit difference may flip one quantised value, so a
          # late divergence is possible; reported, not failed (gpu_e2e_*kv_quant check logits)
          for kv in q8 q4; do
            a=$(./tome run -m "$sg" -p "Once upon a time" -n 48 --temp 0 --ignore-eos --print-ids -q --gpu --kv $kv 2>&1)
            b=$(./tome run -m "$sg" -p "Once upon a time" -n 48 --temp 0 --ignore-eos --print-ids -q --cpu --exact --kv $kv 2>&1)
            if [ "$a" = "$b" ]; then cli="$cli, $kv identical"; else cli="$cli, $kv differ"; echo "gpu $kv: $a"; echo "cpu $kv: $b"; fi
          done
          ./tome plan -m "$sg" --gpu -c max | tail -n 4
        fi
      fi
      result[e2e]="$r; $cli" ;;
    bench)
      if [ -x build/lab_gemm ]; then
        out=$(timeout 150 build/lab_gemm --budget 40 2>&1); rc=$?; echo "$out"
        gemm_line=$(echo "$out" | sed -n 's/^lab_gemm: summary: //p' | tail -n 1)
        [ -n "$gemm_line" ] || gemm_line="no summary (exit $rc): $(echo "$out" | tail -n 1)"
        [ $rc -eq 0 ] || gemm_line="exit $rc: $gemm_line"
      else
        gemm_line="missing build/lab_gemm"
      fi
      # the FlashAttention prefill lab (issue #10): check against the CPU, then TFLOP/s at
      # S = 4K, 16K, 64K (32/8 heads of 128, causal) for f16 and q8 pages; about 20-40 s
      if [ -x build/lab_attn ]; then
        out=$(timeout 150 build/lab_attn 2>&1); rc=$?; echo "$out"
        attn_line="$(echo "$out" | sed -n 's/^lab_attn: check \(ok\|FAILED\)$/check \1/p' | tail -n 1)"
        [ $rc -eq 0 ] || attn_line="exit $rc: ${attn_line:-$(echo "$out" | tail -n 1)}"
        while IFS= read -r l; do
          arows+=("$(echo "$l" | sed -n 's/^lab_attn: time kv \([a-z0-9]*\) S \([0-9]*\): \([0-9.]*\) ms, \([0-9.]*\) TFLOP\/s$/| \1 | \2 | \3 | \4 |/p')")
        done < <(echo "$out" | grep -E '^lab_attn: time kv [a-z0-9]+ S [0-9]+: [0-9.]+ ms')
      else
        attn_line="missing build/lab_attn"
      fi
      if [ ! -x build/mkgguf ] || [ ! -x ./tome ]; then result[bench]="missing ./tome or build/mkgguf"; continue; fi
      dir=${TOME_BENCH_DIR:-/tmp/tome-gpu-bench}
      # TOME_BENCH_SHAPE: other mkgguf shape flags; a small one smoke-tests this script (keep the
      # widths multiples of 256, or the q4_k_m mix falls back to Q5_0, which the GPU refuses)
      shape=${TOME_BENCH_SHAPE:---n-embd 4096 --n-layer 32 --n-head 32 --n-head-kv 8 --n-ff 14336 --vocab 128256 --ctx 8192 --rope-base 500000}
      mkdir -p "$dir"
      nb=0
      for preset in q8_0 q4_k_m; do
        f=$dir/llama8b-$preset.gguf
        if [ ! -s "$f" ]; then
          t0=$(date +%s)
          # shellcheck disable=SC2086
          if ! timeout 170 build/mkgguf -o "$f" --arch llama $shape --preset "$preset" --seed 8 -t "$(nproc)"; then
            rm -f "$f"; brows+=("| $preset | mkgguf failed or timed out | | |"); continue
          fi
          echo "mkgguf $preset: $(( $(date +%s) - t0 )) s"
        fi
        out=$(timeout 100 ./tome bench -m "$f" --gpu -q -p 256 -n 128 -r 2 2>&1); rc=$?
        echo "$out"
        if [ $rc -ne 0 ]; then brows+=("| $preset | exit $rc: $(echo "$out" | tail -n 1) | | |"); continue; fi
        pp=$(echo "$out" | sed -n 's/^prefill: [0-9]* tokens: \([0-9.]*\) tok\/s.*/\1/p')
        tg=$(echo "$out" | sed -n 's/^decode: *[0-9]* tokens: \([0-9.]*\) tok\/s.*/\1/p')
        gbs=$(echo "$out" | sed -n 's/^weights: .* = \([0-9.]*\) GB\/s.*/\1/p')
        brows+=("| $preset | $pp | $tg | $gbs |")
        nb=$((nb + 1))
        # decode with and without CUDA graphs (issue #9): the run above had them unless it says off
        gon=$(echo "$out" | sed -n 's/^graphs: *\(.*\)/\1/p')
        out2=$(timeout 60 ./tome bench -m "$f" --gpu -q -p 0 -n 128 -r 2 --no-graphs 2>&1); echo "$out2"
        tg2=$(echo "$out2" | sed -n 's/^decode: *[0-9]* tokens: \([0-9.]*\) tok\/s.*/\1/p')
        grows+=("| $preset short-context decode | ${tg:-?} tok/s (graphs ${gon:-?}) | ${tg2:-?} tok/s (no graphs) |")
      done
      result[bench]="$nb of 2 models measured (table below)" ;;
    longctx)
      if [ ! -x build/mkgguf ] || [ ! -x ./tome ] || [ ! -x build/tests-rel ]; then
        result[longctx]="missing ./tome, build/mkgguf or build/tests-rel"; continue
      fi
      dir=${TOME_BENCH_DIR:-/tmp/tome-gpu-bench}
      shape=${TOME_BENCH_SHAPE:---n-embd 4096 --n-layer 32 --n-head 32 --n-head-kv 8 --n-ff 14336 --vocab 128256 --ctx 8192 --rope-base 500000}
      mkdir -p "$dir"
      f=$dir/llama8b-q4_k_m.gguf
      if [ ! -s "$f" ]; then
        # shellcheck disable=SC2086
        if ! timeout 170 build/mkgguf -o "$f" --arch llama $shape --preset q4_k_m --seed 8 -t "$(nproc)"; then
          rm -f "$f"; result[longctx]="mkgguf failed or timed out"; continue
        fi
      fi
      ./tome plan -m "$f" --gpu -c max --kv "${TOME_LONGCTX_KV:-q4}" 2>&1 | tail -n 6
      out=$(TOME_LONGCTX_MODEL=$f timeout 240 build/tests-rel gpu_longctx_ 2>&1); echo "$out"
      while IFS= read -r l; do
        lrows+=("| $(echo "$l" | sed -n 's/^longctx: kv \([a-z0-9]*\) fill \([0-9]*\): .*fill \([0-9.]*\) s.*decode \([0-9.]*\) ms\/step (\([0-9.]*\) tok\/s), KV \([0-9.]*\) GiB, attention \([0-9.]*\) ms = \([0-9.a-z]*\) TB\/s.*/\1 | \2 | \6 | \3 | \4 | \5 | \7 | \8/p') |")
      done < <(echo "$out" | grep '^longctx:')
      while IFS= read -r l; do
        grows+=("| $(echo "$l" | sed -n 's/^longctx-short: kv \([a-z0-9]*\) fill \([0-9]*\): graphs \([a-z]*\): decode \([0-9.]*\) ms\/step (\([0-9.]*\) tok\/s), \(.*\)/8B Q4_K_M, kv \1, \2 positions | graphs \3: \5 tok\/s (\4 ms) | \6/p') |")
      done < <(echo "$out" | grep '^longctx-short:')
      result[longctx]="$(summary_line "$out"); ${#lrows[@]} fills measured (table below)" ;;
    *) echo "gpu.sh: unknown group '$g' (ops, e2e, bench, longctx; or prep)" >&2; exit 1 ;;
  esac
done
echo
echo "| group | result |"
echo "|---|---|"
for g in $groups; do echo "| $g | ${result[$g]} |"; done
[ -n "${gemm_line:-}" ] && echo "| bench: GEMM lab | $gemm_line |"
[ -n "${attn_line:-}" ] && echo "| bench: attention lab | $attn_line; ${#arows[@]} timings (table below) |"
if [ ${#arows[@]} -gt 0 ]; then
  echo
  echo "| FlashAttention prefill (lab_attn: 32/8 heads of 128, causal) | S | ms | TFLOP/s |"
  echo "|---|---|---|---|"
  printf '%s\n' "${arows[@]}"
fi
if [ ${#brows[@]} -gt 0 ]; then
  echo
  echo "| 8B-shaped llama (GPU) | prefill 256 tok/s | decode 128 tok/s | decode weight GB/s |"
  echo "|---|---|---|---|"
  printf '%s\n' "${brows[@]}"
fi
if [ ${#lrows[@]} -gt 0 ]; then
  echo
  echo "| KV type (8B-shaped Q4_K_M, GPU) | KV positions | KV GiB | fill s | decode ms/step | decode tok/s | attention ms | KV TB/s |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${lrows[@]}"
fi
if [ ${#grows[@]} -gt 0 ]; then
  echo
  echo "| CUDA graphs (decode steps) | with / measured | without / steps replayed |"
  echo "|---|---|---|"
  printf '%s\n' "${grows[@]}"
fi
echo "total: $(( $(date +%s) - t_start )) s"

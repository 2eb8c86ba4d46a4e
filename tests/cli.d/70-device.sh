# Device choice (issue #8): --gpu[=N] requires a GPU (exit 4 with the reason), --cpu forces the
# CPU, the default takes the GPU when one is usable and otherwise says why on one stderr line
# (-q silences it). On a machine with a GPU the no-GPU cases are skipped and the GPU ones run.

DM=$TMP/dev-tiny.gguf
if [ ! -x build/mkgguf ]; then
  skip device-model "build/mkgguf not built"
elif ! build/mkgguf -o "$DM" --arch llama --type q8_0 --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 \
       --vocab 300 --seed 5 -t 1 >/dev/null 2>&1; then
  bad device-model "build/mkgguf failed"
else
  expect_exit 1 device-gpu-bad-number -- "$TOME" run -m "$DM" -p hi -n 1 --gpu=abc
  expect_err "flag --gpu: 'abc' is not a GPU number" device-gpu-bad-number-message
  expect_exit 1 device-gpu-negative -- "$TOME" run -m "$DM" -p hi -n 1 --gpu=-1
  expect_exit 1 device-cpu-and-gpu -- "$TOME" run -m "$DM" -p hi -n 1 --cpu --gpu
  expect_err 'exclude each other' device-cpu-and-gpu-message
  expect_exit 1 device-bench-bad-number -- "$TOME" bench -m "$DM" --gpu=x
  expect_exit 1 device-plan-bad-number -- "$TOME" plan -m "$DM" --gpu=1x

  # --cpu: never a notice, and the same greedy ids as the default on a CPU-only machine
  expect_exit 0 device-cpu-run -- "$TOME" run -m "$DM" -p hi -n 3 --temp 0 --ignore-eos --print-ids --cpu
  ids_cpu=$OUT
  if grep -q 'running on the CPU' "$TMP/err"; then bad device-cpu-no-notice "$ERR"; else ok device-cpu-no-notice; fi

  if "$TOME" plan -m "$DM" --gpu -q >/dev/null 2>&1; then
    # a driver is here: the GPU cases (tests/gpu.sh runs these on the GPU machine)
    # the GPU computes in float with an f16 cache: compare with the CPU doing the same (--exact)
    expect_exit 0 device-cpu-exact-run -- "$TOME" run -m "$DM" -p hi -n 3 --temp 0 --ignore-eos --print-ids --cpu --exact --kv f16
    ids_exact=$OUT
    expect_exit 0 device-gpu-run -- "$TOME" run -m "$DM" -p hi -n 3 --temp 0 --ignore-eos --print-ids --gpu
    if [ "$OUT" = "$ids_exact" ]; then ok device-gpu-same-greedy-ids; else bad device-gpu-same-greedy-ids "'$OUT' vs '$ids_exact'"; fi
    expect_exit 0 device-default-gpu-silent -- "$TOME" run -m "$DM" -p hi -n 1 --temp 0
    if grep -q 'running on the CPU' "$TMP/err"; then bad device-default-gpu-no-notice "$ERR"; else ok device-default-gpu-no-notice; fi
    # q8/q4 pages run on the GPU (issue #9); the f32 reference cache is the CPU's alone
    expect_exit 0 device-gpu-q8-runs -- "$TOME" run -m "$DM" -p hi -n 1 --gpu --kv q8
    expect_exit 1 device-gpu-f32-refused -- "$TOME" run -m "$DM" -p hi -n 1 --gpu --kv f32
    expect_err 'f16, q8 or q4' device-gpu-f32-refused-message
    # a tensor type the GPU kernels lack: --gpu refuses (3), the default runs on the CPU and says so
    Q41=$TMP/dev-q41.gguf
    if build/mkgguf -o "$Q41" --arch llama --type q4_1 --n-embd 64 --n-head 4 --vocab 300 --seed 6 -t 1 >/dev/null 2>&1; then
      expect_exit 3 device-gpu-type-refused -- "$TOME" run -m "$Q41" -p hi -n 1 --gpu
      expect_err "type Q4_1, which the GPU does not run yet" device-gpu-type-refused-message
      expect_exit 0 device-default-type-fallback -- "$TOME" run -m "$Q41" -p hi -n 1
      expect_err 'cannot run this .*Q4_1.*; running on the CPU$' device-default-type-fallback-notice
    else
      bad device-q41-model "build/mkgguf failed"
    fi
    expect_exit 0 device-plan-gpu -- "$TOME" plan -m "$DM" --gpu
    expect_out 'free of .* MiB on GPU 0' device-plan-gpu-vram
    expect_exit 4 device-gpu-absent-ordinal -- "$TOME" run -m "$DM" -p hi -n 1 --gpu=1023
    expect_err 'no such GPU' device-gpu-absent-ordinal-message
  else
    expect_exit 4 device-run-gpu-absent -- "$TOME" run -m "$DM" -p hi -n 1 --gpu
    expect_err '^tome: --gpu: no GPU \(.*libcuda' device-run-gpu-absent-reason
    expect_exit 4 device-run-gpu1-absent -- "$TOME" run -m "$DM" -p hi -n 1 --gpu=1
    expect_exit 4 device-plan-gpu-absent -- "$TOME" plan -m "$DM" --gpu
    expect_err 'no GPU' device-plan-gpu-absent-reason
    expect_exit 4 device-bench-gpu-absent -- "$TOME" bench -m "$DM" -p 4 -n 2 -r 1 --bw-mib 0 --gpu
    # default: works on the CPU, with exactly one notice line naming the reason
    expect_exit 0 device-default-run -- "$TOME" run -m "$DM" -p hi -n 3 --temp 0 --ignore-eos --print-ids
    expect_err '^tome: no GPU \(.*\); running on the CPU$' device-default-notice
    n=$(grep -c 'running on the CPU' "$TMP/err")
    if [ "$n" = 1 ]; then ok device-default-notice-once; else bad device-default-notice-once "$n lines: $ERR"; fi
    if [ "$OUT" = "$ids_cpu" ]; then ok device-default-same-ids; else bad device-default-same-ids "'$OUT' vs '$ids_cpu'"; fi
    expect_exit 0 device-default-quiet -- "$TOME" run -m "$DM" -p hi -n 3 --temp 0 --ignore-eos --print-ids -q
    if [ -z "$ERR" ]; then ok device-quiet-no-notice; else bad device-quiet-no-notice "$ERR"; fi
    expect_exit 0 device-plan-default -- "$TOME" plan -m "$DM"
    expect_out 'MemAvailable' device-plan-default-ram
    expect_err 'running on the CPU' device-plan-default-notice
    expect_exit 0 device-plan-cpu -- "$TOME" plan -m "$DM" --cpu
    if [ -z "$ERR" ]; then ok device-plan-cpu-silent; else bad device-plan-cpu-silent "$ERR"; fi
    expect_exit 0 device-bench-default -- "$TOME" bench -m "$DM" -p 4 -n 2 -r 1 --bw-mib 0
    expect_err 'running on the CPU' device-bench-default-notice
    expect_out 'threads, prefill batch' device-bench-default-cpu
  fi
fi

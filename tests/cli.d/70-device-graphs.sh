# CUDA graphs of GPU decode steps (issue #9): `bench --no-graphs` is accepted everywhere (a CPU
# run has no graphs line); with a driver present (the gpu-emu-cli stage's stand-in, or a GPU)
# bench says whether decode steps ran as graph replays, --no-graphs and TOME_NO_GRAPHS=1 turn
# them off, and greedy ids are the same either way. The file name starts with 70-device so the
# gpu-emu-cli stage (TOME_CLI_ONLY=70-device) runs it too.

GM=$TMP/graphs-tiny.gguf
if [ ! -x build/mkgguf ]; then
  skip graphs-model "build/mkgguf not built"
elif ! build/mkgguf -o "$GM" --arch llama --type q8_0 --n-embd 128 --n-head 4 --n-head-kv 2 --vocab 300 --seed 9 -t 1 >/dev/null 2>&1; then
  bad graphs-model "build/mkgguf failed"
else
  expect_exit 0 graphs-flag-cpu -- "$TOME" bench -m "$GM" -p 0 -n 4 -r 1 --bw-mib 0 --cpu --no-graphs
  if printf '%s' "$OUT" | grep -q '^graphs:'; then bad graphs-cpu-no-line "$OUT"; else ok graphs-cpu-no-line; fi
  if "$TOME" plan -m "$GM" --gpu -q >/dev/null 2>&1; then
    expect_exit 0 graphs-bench-gpu -- "$TOME" bench -m "$GM" -p 4 -n 8 -r 1 --gpu -q
    expect_out 'graphs:  on \([0-9]+ of [0-9]+ decode steps replayed as one CUDA graph\)' graphs-bench-on
    expect_exit 0 graphs-bench-gpu-off -- "$TOME" bench -m "$GM" -p 4 -n 8 -r 1 --gpu -q --no-graphs
    expect_out 'graphs:  off \(--no-graphs\)' graphs-bench-off
    expect_exit 0 graphs-bench-gpu-env -- env TOME_NO_GRAPHS=1 "$TOME" bench -m "$GM" -p 0 -n 4 -r 1 --gpu -q --json
    expect_out '"cuda_graphs": *"off \(TOME_NO_GRAPHS\)"' graphs-bench-env-off
    for kv in f16 q4; do
      expect_exit 0 graphs-run-$kv -- "$TOME" run -m "$GM" -p hi -n 24 --temp 0 --ignore-eos --print-ids --gpu --kv $kv
      ids_g=$OUT
      expect_exit 0 graphs-run-$kv-plain -- env TOME_NO_GRAPHS=1 "$TOME" run -m "$GM" -p hi -n 24 --temp 0 --ignore-eos --print-ids --gpu --kv $kv
      if [ "$OUT" = "$ids_g" ]; then ok graphs-run-$kv-same-ids; else bad graphs-run-$kv-same-ids "'$ids_g' vs '$OUT'"; fi
    done
  else
    skip graphs-gpu "no GPU driver (the gpu-emu-cli stage runs these against tests/fake_cuda.c)"
  fi
fi

# tome bench -m MODEL: flag errors, the text report, and the --json object's fields (prefill and
# decode tok/s, weight bytes per token, read bandwidth). A tiny random model from build/mkgguf.

bench_json() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

expect_exit 1 bench-no-model -- "$TOME" bench -p 8
expect_err 'bench: -m MODEL is required' bench-no-model-msg
expect_exit 1 bench-bad-flag -- "$TOME" bench -m x.gguf --frobnicate
expect_exit 1 bench-bad-reps -- "$TOME" bench -m x.gguf -r 0
expect_exit 2 bench-missing-model -- "$TOME" bench -m "$TMP/no-such-model.gguf" -p 4 -n 4 --bw-mib 0

BM=$TMP/bench-tiny.gguf
if [ ! -x build/mkgguf ]; then
  skip bench-model "build/mkgguf not built"
elif ! build/mkgguf -o "$BM" --type q8_0 --n-embd 64 --n-layer 2 --vocab 300 --seed 5 -t 1 >/dev/null 2>&1; then
  bad bench-model "build/mkgguf failed"
else
  expect_exit 0 bench-text -- "$TOME" bench -m "$BM" -p 16 -n 8 -r 2 -t 2 --bw-mib 64
  expect_out 'prefill: 16 tokens: [0-9.]+ tok/s' bench-text-prefill
  expect_out 'decode:  8 tokens: [0-9.]+ tok/s .* ms/token' bench-text-decode
  expect_out 'of the measured read bandwidth [0-9.]+ GB/s \(2 threads' bench-text-bandwidth
  expect_exit 0 bench-json -- "$TOME" bench -m "$BM" -p 16 -n 8 -r 2 -t 1 --bw-mib 64 --json
  printf '%s' "$OUT" > "$TMP/bench.json"
  v=$(bench_json "$TMP/bench.json" 'j["prefill_tok_s"] > 0 and j["decode_tok_s"] >= j["decode_tok_s_mean"] > 0 and j["read_bw_gb_s"] > 0.1 and 0 < j["read_bw_fraction"] and j["weight_bytes_per_token"] > 64*64*2*4 and j["threads"] == 1 and j["n_prompt"] == 16 and j["n_gen"] == 8' 2>&1)
  if [ "$v" = True ]; then ok bench-json-fields; else bad bench-json-fields "$v: $OUT"; fi
  expect_exit 0 bench-decode-only -- "$TOME" bench -m "$BM" -p 0 -n 4 -r 1 --bw-mib 0 --json
  v=$(printf '%s' "$OUT" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["prefill_tok_s"] == 0 and j["decode_tok_s"] > 0 and j["read_bw_fraction"] == 0)' 2>&1)
  if [ "$v" = True ]; then ok bench-decode-only-json; else bad bench-decode-only-json "$v: $OUT"; fi
  # -d: both tests after that many context tokens (llama-bench's -d)
  expect_exit 0 bench-depth -- "$TOME" bench -m "$BM" -p 8 -n 4 -d 40 -r 1 --bw-mib 0 --json
  v=$(printf '%s' "$OUT" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["n_depth"] == 40 and j["prefill_tok_s"] > 0 and j["decode_tok_s"] > 0)' 2>&1)
  if [ "$v" = True ]; then ok bench-depth-json; else bad bench-depth-json "$v: $OUT"; fi
  expect_exit 0 bench-depth-text -- "$TOME" bench -m "$BM" -p 8 -n 4 -d 40 -r 1 --bw-mib 0
  expect_out 'filled with 40 context tokens first' bench-depth-text-says
  expect_exit 1 bench-depth-negative -- "$TOME" bench -m "$BM" -d -1
fi

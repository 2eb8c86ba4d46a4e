# Long context (issue #7): tome plan's numbers, tome run refusing a context that does not fit,
# --kv types, --sinks/--window streaming past -c, RoPE override flags. Models are tiny
# mkgguf ones (synthetic vocabulary), so checks are on numbers, counts and exit codes.

lc_json() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

LM=$TMP/lc-tiny.gguf
L8=$TMP/lc-8b-shape.gguf
if [ ! -x build/mkgguf ]; then
  skip longctx "build/mkgguf not built"
elif ! build/mkgguf -o "$LM" --arch llama --type q8_0 --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 \
       --vocab 512 --seed 3 -t 1 >/dev/null 2>&1; then
  bad longctx-model "build/mkgguf failed"
else
  # an 8B-shaped attention (32 layers, 8 kv heads of 128) on a narrow model: the KV figures
  # are those of Llama 3 8B: 128 KiB/token in f16; q8 1 f16 scale per row, q4 per 32 values
  if build/mkgguf -o "$L8" --arch llama --type q8_0 --n-embd 64 --n-layer 32 --n-head 8 --n-head-kv 8 \
       --head-dim 128 --n-ff 64 --vocab 512 --seed 1 -t 1 >/dev/null 2>&1; then
    for kvb in f16:131072 q8:66560 q4:40960; do
      kv=${kvb%%:*} want=${kvb#*:}
      expect_exit 0 plan-8b-$kv -- "$TOME" plan -m "$L8" -c 8192 --kv "$kv" --json
      got=$(lc_json "$OUT" 'j["kv_bytes_per_token"]' 2>&1)
      if [ "$got" = "$want" ]; then ok plan-8b-$kv-bytes; else bad plan-8b-$kv-bytes "got $got, want $want"; fi
    done
    expect_exit 0 plan-8b-text -- "$TOME" plan -m "$L8" -c 8192
    expect_out '^kv per token: +131072 bytes \(128\.00 KiB, f16\)' plan-8b-text-kv
    expect_out '^kv total: +1073741824 bytes' plan-8b-text-total
    expect_out '^fits: +(yes|no)$' plan-8b-text-fits
  else
    bad plan-8b-model "build/mkgguf failed"
  fi

  # -c max: fits, and one more page would not (the slack is under one page of KV)
  expect_exit 0 plan-max -- "$TOME" plan -m "$LM" -c max --json
  d=$(lc_json "$OUT" 'j["fits"] and j["total_bytes"] <= j["mem_available"] and j["mem_available"] - j["total_bytes"] < 2 * 64 * j["kv_bytes_per_token"] + 4096 and j["n_ctx"] % 64 == 0' 2>&1)
  if [ "$d" = True ]; then ok plan-max-consistent; else bad plan-max-consistent "$d: $OUT"; fi
  maxc=$(lc_json "$OUT" 'j["n_ctx"]' 2>/dev/null)
  if [ -n "$maxc" ]; then
    # twice the largest context cannot fit
    expect_exit 0 plan-over-max -- "$TOME" plan -m "$LM" -c $((maxc * 2)) --json
    d=$(lc_json "$OUT" 'not j["fits"]' 2>&1)
    if [ "$d" = True ]; then ok plan-over-max-does-not-fit; else bad plan-over-max-does-not-fit "$d"; fi
    if [ $((maxc * 2)) -le 1073741824 ]; then
      expect_exit 4 run-too-big -- "$TOME" run -m "$LM" -p "hello" -c $((maxc * 2))
      expect_err 'does not fit in memory: weights .* KV .*bytes/token.* scratch .* available' run-too-big-numbers
    fi
  fi
  expect_exit 1 plan-bad-kv -- "$TOME" plan -m "$LM" --kv q3
  expect_exit 1 plan-no-model -- "$TOME" plan -c 100

  # every KV type runs; a bad one is a flag error
  for kv in f16 q8 q4 f32; do
    expect_exit 0 run-kv-$kv -- "$TOME" run -m "$LM" -p "a b c" -n 4 --temp 0 --ignore-eos --print-ids -q --kv $kv
    expect_out '^[0-9]+ [0-9]+ [0-9]+ [0-9]+$' run-kv-$kv-ids
  done
  expect_exit 1 run-kv-bad -- "$TOME" run -m "$LM" -p "a" --kv q2
  expect_exit 1 run-sinks-no-window -- "$TOME" run -m "$LM" -p "a" --sinks 4

  # the context fills: without sinks, stop with the message (finish "length"); the last token
  # comes from position 63's logits, so prompt + generated = 65
  expect_exit 0 run-ctx-stop -- "$TOME" run -m "$LM" -p "a b c" -c 64 -n 200 --temp 0 --ignore-eos --json
  d=$(lc_json "$OUT" 'j["finish_reason"] == "length" and j["prompt_tokens"] + j["generated_tokens"] == 65' 2>&1)
  if [ "$d" = True ]; then ok run-ctx-stop-at-64; else bad run-ctx-stop-at-64 "$d: $OUT"; fi
  expect_err 'stopped at the end of the context \(64 positions' run-ctx-stop-message
  # with --sinks 4 --window 32: generation runs past -c 64 (old pages evicted, no message)
  expect_exit 0 run-streaming -- "$TOME" run -m "$LM" -p "a b c" -c 64 -n 200 --sinks 4 --window 32 --temp 0 --ignore-eos --json
  d=$(lc_json "$OUT" 'j["finish_reason"] == "length" and j["generated_tokens"] == 200' 2>&1)
  if [ "$d" = True ]; then ok run-streaming-past-ctx; else bad run-streaming-past-ctx "$d: $OUT"; fi
  if grep -q 'end of the context' "$TMP/err"; then bad run-streaming-no-stop "$ERR"; else ok run-streaming-no-stop; fi
  # streaming with a prompt longer than the context is accepted; without, exit 2
  long=$(python3 -c 'print(" ".join(["a b c"] * 60))')
  expect_exit 2 run-long-prompt -- "$TOME" run -m "$LM" -p "$long" -c 64 -n 4
  expect_exit 0 run-long-prompt-streaming -- "$TOME" run -m "$LM" -p "$long" -c 64 -n 4 --sinks 4 --window 32 -q

  # chunked prefill: --chunk (alias of -b) does not change the greedy ids
  expect_exit 0 run-chunk-64 -- "$TOME" run -m "$LM" -p "$long" -n 6 --temp 0 --ignore-eos --print-ids -q --chunk 64
  ids64=$OUT
  expect_exit 0 run-chunk-3 -- "$TOME" run -m "$LM" -p "$long" -n 6 --temp 0 --ignore-eos --print-ids -q --chunk 3
  if [ -n "$ids64" ] && [ "$OUT" = "$ids64" ]; then ok run-chunk-invariant; else bad run-chunk-invariant "'$OUT' vs '$ids64'"; fi

  # RoPE overrides: accepted and visible in the plan; an unknown method is a flag error
  expect_exit 0 plan-rope-yarn -- "$TOME" plan -m "$LM" -c 256 --rope-scaling yarn --rope-scale 4 --rope-orig-ctx 64
  expect_out '^rope: +yarn, base 10000, factor 4, original context 64' plan-rope-yarn-line
  expect_exit 0 run-rope-yarn -- "$TOME" run -m "$LM" -p "a b c" -n 2 -q --rope-scaling yarn --rope-scale 4 --rope-orig-ctx 16
  expect_exit 0 run-rope-base -- "$TOME" run -m "$LM" -p "a b c" -n 2 -q --rope-base 500000
  expect_exit 1 run-rope-bad -- "$TOME" run -m "$LM" -p "a b c" -n 2 --rope-scaling wobbly

  # tome info: the effective RoPE of a YaRN model (magnitude 1 + 0.1 ln 4 = 1.13863)
  if build/mkgguf -o "$TMP/lc-yarn.gguf" --rope-scaling yarn --rope-factor 4 --rope-orig-ctx 1024 --ctx 4096 \
       -t 1 >/dev/null 2>&1; then
    expect_exit 0 info-rope-effective -- "$TOME" info "$TMP/lc-yarn.gguf"
    expect_out '^rope eff\.: +magnitude 1\.1386' info-rope-effective-line
  else
    bad info-rope-effective "build/mkgguf failed"
  fi
fi

# tome info: every GGUF in the test data, --json, malformed and missing files, bad flags.

# json_get FILE EXPR: evaluates a Python expression over the parsed JSON `j`; fails if the
# file is not one valid JSON object.
json_get() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert isinstance(j, dict); print(eval(sys.argv[2]))' "$1" "$2"; }

info_files=$(ls "$TOME_DATA"/vocab/*.gguf "$TOME_DATA"/models/llamacpp/*.gguf 2>/dev/null || true)
if [ -z "$info_files" ]; then
  skip info-data "no GGUF files under $TOME_DATA/vocab or $TOME_DATA/models/llamacpp"
fi
for f in $info_files; do
  b=$(basename "$f" .gguf)
  expect_exit 0 "info-$b" -- "$TOME" info "$f"
  expect_out '^runnable: (yes|no — .+)$' "info-$b-runnable-line"
  expect_out "^tensors: +[0-9]+" "info-$b-tensors"
  case "$b" in
    tiny-gqa768-*)
      expect_out '^architecture: +llama( |$)' "info-$b-arch"
      expect_out '^layers: +4$' "info-$b-layers"
      expect_out '^width: +256$' "info-$b-width"
      expect_out '^heads: +8$' "info-$b-heads"
      expect_out '^kv heads: +2$' "info-$b-kv-heads"
      expect_out '^head dim: +32$' "info-$b-head-dim"
      expect_out '^ff: +768$' "info-$b-ff"
      expect_out '^context: +4096$' "info-$b-ctx"
      expect_out '^vocab: +32000$' "info-$b-vocab"
      expect_out '^tokenizer: +llama / default, 32000 tokens' "info-$b-tokenizer"
      expect_out '^rope: +base 10000, 32 dims, adjacent pairs, scaling none' "info-$b-rope"
      expect_out '^  F32 +9 ' "info-$b-f32-count"
      expect_out '^runnable: yes$' "info-$b-runnable"
      ;;
    ggml-vocab-gpt-2)
      expect_out '^architecture: +gpt2' "info-$b-arch"
      expect_out "^runnable: no — architecture 'gpt2' is not supported \\(tome runs llama, qwen2, qwen3, phi3\\); vocabulary-only file" "info-$b-why"
      ;;
    ggml-vocab-llama-spm)
      expect_out '^architecture: +llama' "info-$b-arch"
      expect_out '^runnable: no — vocabulary-only file \(no weights\)$' "info-$b-why"
      ;;
    ggml-vocab-phi-3)
      expect_out '^architecture: +phi3' "info-$b-arch"
      expect_out '^head dim: +96$' "info-$b-head-dim"
      expect_out 'halves \(neox\)' "info-$b-neox"
      expect_out 'chat template: yes' "info-$b-template"
      ;;
  esac
  expect_exit 0 "info-$b-json" -- "$TOME" info "$f" --json
  cp "$TMP/out" "$TMP/info.json"
  arch=$(json_get "$TMP/info.json" 'j["architecture"]' 2>&1)
  case "$b" in
    tiny-gqa768-*)
      got=$(json_get "$TMP/info.json" '[j["architecture"], j["hparams"]["n_layer"], j["hparams"]["n_head"], j["hparams"]["n_head_kv"], j["hparams"]["head_dim"], j["hparams"]["n_ff"], j["hparams"]["n_vocab"], j["hparams"]["n_ctx_train"], j["hparams"]["n_embd"], j["runnable"], j["n_tensors"]]' 2>&1)
      want="['llama', 4, 8, 2, 32, 768, 32000, 4096, 256, True, 39]"
      if [ "$got" = "$want" ]; then ok "info-$b-json-facts"; else bad "info-$b-json-facts" "got $got, want $want"; fi
      sum=$(json_get "$TMP/info.json" 'sum(t["bytes"] for t in j["tensor_types"]) == j["weight_bytes"] and sum(t["count"] for t in j["tensor_types"]) == j["n_tensors"]' 2>&1)
      if [ "$sum" = True ]; then ok "info-$b-json-type-table"; else bad "info-$b-json-type-table" "$sum"; fi
      ;;
    *)
      if [ -n "$arch" ] && [ "${arch#Traceback}" = "$arch" ]; then ok "info-$b-json-parses"
      else bad "info-$b-json-parses" "$arch"; fi
      ;;
  esac
done

# Synthetic models of every supported architecture (the fuzzer's seed generator writes them).
if command -v python3 >/dev/null && bash tests/fuzz_gguf.seeds.sh "$TMP/seeds" 2>"$TMP/seeds.err"; then
  for a in llama-f32 llama-q8 llama-yarn qwen2 qwen3 phi3; do
    expect_exit 0 "info-seed-$a" -- "$TOME" info "$TMP/seeds/seed-$a.gguf"
    expect_out '^runnable: yes$' "info-seed-$a-runnable"
  done
  expect_out '^architecture: +phi3' info-seed-phi3-arch
  expect_out 'scaling longrope' info-seed-phi3-longrope
  expect_exit 0 info-seed-yarn-again -- "$TOME" info "$TMP/seeds/seed-llama-yarn.gguf"
  expect_out 'scaling yarn \(factor 4, original context 64\)' info-seed-yarn
  expect_exit 0 info-seed-empty -- "$TOME" info "$TMP/seeds/seed-empty-v2.gguf"
  expect_out '^gguf version: 2 ' info-seed-empty-v2
  expect_out "^runnable: no — no 'general.architecture' key" info-seed-empty-why
else
  skip info-seeds "tests/fuzz_gguf.seeds.sh failed: $(head -c 200 "$TMP/seeds.err")"
fi

# Malformed files: exit 2 with the file and a byte offset in the message, never a signal.
src=$(ls "$TOME_DATA"/vocab/ggml-vocab-llama-spm.gguf 2>/dev/null || true)
if [ -n "$src" ]; then
  cp "$src" "$TMP/badmagic.gguf"; chmod u+w "$TMP/badmagic.gguf"
  printf 'XGUF' | dd of="$TMP/badmagic.gguf" bs=1 seek=0 conv=notrunc status=none
  expect_exit 2 info-bad-magic -- "$TOME" info "$TMP/badmagic.gguf"
  expect_err "^tome: $TMP/badmagic.gguf: offset 0: bad magic" info-bad-magic-message
  cp "$src" "$TMP/badver.gguf"; chmod u+w "$TMP/badver.gguf"
  printf '\001' | dd of="$TMP/badver.gguf" bs=1 seek=4 conv=notrunc status=none
  expect_exit 2 info-bad-version -- "$TOME" info "$TMP/badver.gguf" --json
  expect_err "offset 4: unsupported GGUF version 1" info-bad-version-message
  for n in 0 3 10 24 100 1000 100000; do
    head -c "$n" "$src" > "$TMP/cut$n.gguf"
    expect_exit 2 "info-truncated-$n" -- "$TOME" info "$TMP/cut$n.gguf"
    expect_err "^tome: $TMP/cut$n.gguf: offset [0-9]+: " "info-truncated-$n-offset"
  done
else
  skip info-malformed "vocab/ggml-vocab-llama-spm.gguf not under $TOME_DATA"
fi
model=$(ls "$TOME_DATA"/models/llamacpp/tiny-gqa768-Q4_0.gguf 2>/dev/null || true)
if [ -n "$model" ]; then
  head -c 13000000 "$model" > "$TMP/cutmodel.gguf"
  expect_exit 2 info-truncated-model -- "$TOME" info "$TMP/cutmodel.gguf"
  expect_err "offset [0-9]+: tensor '[^']+' data .* lies outside the file" info-truncated-model-message
fi
printf 'hello' > "$TMP/notgguf.txt"
expect_exit 2 info-not-gguf -- "$TOME" info "$TMP/notgguf.txt"
expect_err "offset 0: bad magic" info-not-gguf-message

# Missing file, directories, flags.
expect_exit 2 info-missing-file -- "$TOME" info "$TMP/does-not-exist.gguf"
expect_err "does-not-exist.gguf: cannot open" info-missing-file-message
expect_exit 2 info-directory -- "$TOME" info "$TMP"
expect_exit 1 info-no-argument -- "$TOME" info
expect_exit 1 info-bad-flag -- "$TOME" info --frob "$TMP/notgguf.txt"
expect_err "unknown flag '--frob'" info-bad-flag-message
expect_exit 1 info-two-files -- "$TOME" info "$TMP/a.gguf" "$TMP/b.gguf"

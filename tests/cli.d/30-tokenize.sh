# tome tokenize: ids against the reference files, --pieces, stdin, --bos/--special, errors.
# Expected ids come from $TOME_DATA (line 12 of each .out file is the case "Hello world").

if have_data vocab/ggml-vocab-llama-spm.gguf; then
  V=$TOME_DATA/vocab
  for voc in llama-spm phi-3 gpt-2; do
    want=$(sed -n 12p "$V/ggml-vocab-$voc.gguf.out" | sed 's/^ //')
    expect_exit 0 "tokenize-$voc" -- "$TOME" tokenize -m "$V/ggml-vocab-$voc.gguf" -p "Hello world"
    if [ "$OUT" = "$want" ]; then ok "tokenize-$voc-ids"; else bad "tokenize-$voc-ids" "got '$OUT', want '$want'"; fi
  done

  # stdin (no -p / -f) gives the same ids as -f
  printf 'Hello world' > "$TMP/hello.txt"
  run_in "$TMP/hello.txt" "$TOME" tokenize -m "$V/ggml-vocab-gpt-2.gguf"
  if [ "$RC" -eq 0 ] && [ "$OUT" = "15496 995" ]; then ok tokenize-stdin; else bad tokenize-stdin "rc $RC, '$OUT'"; fi
  expect_exit 0 tokenize-file -- "$TOME" tokenize -m "$V/ggml-vocab-gpt-2.gguf" -f "$TMP/hello.txt"
  expect_out '^15496 995$' tokenize-file-ids

  # --pieces: one token per line, id TAB decoded text
  expect_exit 0 tokenize-pieces -- "$TOME" tokenize -m "$V/ggml-vocab-llama-spm.gguf" -p "Hello world" --pieces
  expect_out "^3186	 world$" tokenize-pieces-text

  # BOS only on request; special tokens parsed only with --special
  expect_exit 0 tokenize-bos -- "$TOME" tokenize -m "$V/ggml-vocab-llama-spm.gguf" -p "Hello world" --bos
  expect_out '^1 15043 3186$' tokenize-bos-ids
  expect_exit 0 tokenize-special -- "$TOME" tokenize -m "$V/ggml-vocab-gpt-2.gguf" -p "<|endoftext|>" --special
  expect_out '^50256$' tokenize-special-id
  expect_exit 0 tokenize-nospecial -- "$TOME" tokenize -m "$V/ggml-vocab-gpt-2.gguf" -p "<|endoftext|>"
  if [ "$OUT" != "50256" ] && [ -n "$OUT" ]; then ok tokenize-nospecial-text; else bad tokenize-nospecial-text "'$OUT'"; fi

  # invalid UTF-8: exit 2 naming the byte offset
  printf '\xff' > "$TMP/bad.txt"
  run_in "$TMP/bad.txt" "$TOME" tokenize -m "$V/ggml-vocab-gpt-2.gguf"
  if [ "$RC" -eq 2 ]; then ok tokenize-bad-utf8-exit; else bad tokenize-bad-utf8-exit "exit $RC"; fi
  expect_err 'offset 0' tokenize-bad-utf8-offset

  # bench --tokenize reports a speed
  expect_exit 0 bench-tokenize -- "$TOME" bench --tokenize "$TMP/hello.txt" -m "$V/ggml-vocab-gpt-2.gguf"
  expect_out 'MB/s' bench-tokenize-mbs
else
  skip tokenize-vocab "vocab/ not found under TOME_DATA"
fi

if have_data tokenizers/llama3_1/tokenizer.json; then
  want=$(sed -n 12p "$TOME_DATA/tokenizers/llama3_1/cases.out" | sed 's/^ //')
  expect_exit 0 tokenize-hf-llama3 -- "$TOME" tokenize --tokenizer "$TOME_DATA/tokenizers/llama3_1" -p "Hello world"
  if [ "$OUT" = "$want" ]; then ok tokenize-hf-llama3-ids; else bad tokenize-hf-llama3-ids "got '$OUT', want '$want'"; fi
else
  skip tokenize-hf "tokenizers/ not found under TOME_DATA"
fi

# a model with weights (llama.cpp's own prompt ids, with BOS, from the .greedy.txt file)
G=$TOME_DATA/models/llamacpp/tiny-gqa768-Q8_0
if have_data models/llamacpp/tiny-gqa768-Q8_0.gguf; then
  want=$(grep '^prompt_ids' "$G.greedy.txt" | sed 's/^[^:]*: //')
  expect_exit 0 tokenize-model-bos -- "$TOME" tokenize -m "$G.gguf" --bos -p "Once upon a time there was a little robot who"
  if [ "$OUT" = "$want" ]; then ok tokenize-model-bos-ids; else bad tokenize-model-bos-ids "got '$OUT', want '$want'"; fi
else
  skip tokenize-model "models/llamacpp not found under TOME_DATA"
fi

# errors: missing model -> 2, bad or conflicting flags -> 1
expect_exit 2 tokenize-missing-model -- "$TOME" tokenize -m "$TMP/no-such-model.gguf" -p hi
expect_exit 2 tokenize-missing-dir -- "$TOME" tokenize --tokenizer "$TMP/no-such-dir" -p hi
expect_exit 1 tokenize-no-model -- "$TOME" tokenize -p hi
expect_exit 1 tokenize-both-models -- "$TOME" tokenize -m a.gguf --tokenizer d -p hi
expect_exit 1 tokenize-unknown-flag -- "$TOME" tokenize --frobnicate
expect_exit 1 tokenize-p-and-f -- "$TOME" tokenize -m a.gguf -p hi -f x.txt

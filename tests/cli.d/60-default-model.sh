# README's first command: tome's own model finds a pass key in a test document (the main job,
# end to end through the binary). Needs python3 for tools/mkdoc.py (build.sh installs it).
if [ -f weights/tome-byte-1k.gguf ] && command -v python3 >/dev/null; then
  for spec in "0.1 11" "0.5 12" "0.9 13"; do
    set -- $spec
    doc=$TMP/doc-$2.txt
    python3 tools/mkdoc.py --len 1000 --depth "$1" --seed "$2" -o "$doc" 2>"$TMP/answer" >/dev/null
    key=$(sed -n 's/^expected answer: *//p' "$TMP/answer")
    expect_exit 0 "default-model-depth-$1" -- "$TOME" run -m weights/tome-byte-1k.gguf -f "$doc" \
      -p "Q: What is the pass key? A:" --temp 0 -q
    if [ -n "$key" ] && [ "$(echo "$OUT" | tr -d ' \n')" = "$key" ]; then ok "default-model-finds-key-$1"
    else bad "default-model-finds-key-$1" "expected '$key', got '$OUT'"; fi
  done
else
  skip default-model "weights/tome-byte-1k.gguf or python3 missing"
fi

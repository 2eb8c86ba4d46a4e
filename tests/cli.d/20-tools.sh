# tools/mkgguf and tools/llama2c2gguf as a user runs them (built by ./build.sh into build/),
# and `tome info` on what they write.
MK=build/mkgguf L2C=build/llama2c2gguf
if [ ! -x "$MK" ] || [ ! -x "$L2C" ]; then
  skip tools "build/mkgguf or build/llama2c2gguf not built (run ./build.sh)"
else
  expect_exit 0 mkgguf-help -- "$MK" --help
  expect_out 'usage: mkgguf' mkgguf-help-usage
  expect_exit 1 mkgguf-no-output -- "$MK"
  expect_err 'missing -o' mkgguf-no-output-message
  expect_exit 1 mkgguf-unknown-flag -- "$MK" -o "$TMP/x.gguf" --bogus
  expect_err "unknown flag '--bogus'" mkgguf-unknown-flag-message
  expect_exit 1 mkgguf-bad-type -- "$MK" -o "$TMP/x.gguf" --type q3_k
  expect_exit 2 mkgguf-missing-vocab -- "$MK" -o "$TMP/x.gguf" --vocab-from "$TMP/nope.gguf"
  expect_err 'nope.gguf' mkgguf-missing-vocab-names-file
  expect_exit 0 mkgguf-phi3 -- "$MK" -o "$TMP/phi3.gguf" --arch phi3 --n-embd 64 --n-head 4 --n-head-kv 2 \
    --type q8_0 --rope-scaling longrope --ctx 32768 --sliding-window 2048
  expect_err 'wrote .*phi3.gguf' mkgguf-reports

  expect_exit 1 l2c-usage -- "$L2C" only-one-arg
  expect_exit 2 l2c-missing -- "$L2C" "$TMP/none.bin" "$TMP/none.bin" "$TMP/o.gguf"
  expect_err 'none.bin: cannot open' l2c-missing-message
  if have_data models/stories260K.bin && have_data models/tok512.bin; then
    head -c 100000 "$TOME_DATA/models/stories260K.bin" > "$TMP/cut.bin"
    expect_exit 2 l2c-truncated -- "$L2C" "$TMP/cut.bin" "$TOME_DATA/models/tok512.bin" "$TMP/o.gguf"
    expect_err 'truncated' l2c-truncated-message
    expect_exit 0 l2c-stories260k -- "$L2C" "$TOME_DATA/models/stories260K.bin" "$TOME_DATA/models/tok512.bin" \
      "$TMP/stories260K.gguf"
  else
    skip l2c-stories260k "models/stories260K.bin or tok512.bin not under TOME_DATA"
  fi

  # tome info on the results, once `tome info` exists
  run "$TOME" info "$TMP/phi3.gguf"
  if echo "$ERR" | grep -q 'not implemented'; then
    skip tools-info "tome info is not implemented yet"
  else
    expect_exit 0 info-mkgguf-phi3 -- "$TOME" info "$TMP/phi3.gguf"
    expect_out 'phi3' info-mkgguf-phi3-arch
    expect_out 'runnable: yes' info-mkgguf-phi3-runnable
    if [ -e "$TMP/stories260K.gguf" ]; then
      expect_exit 0 info-stories260k -- "$TOME" info "$TMP/stories260K.gguf"
      expect_out 'llama' info-stories260k-arch
      expect_out 'runnable: yes' info-stories260k-runnable
    fi
  fi
fi

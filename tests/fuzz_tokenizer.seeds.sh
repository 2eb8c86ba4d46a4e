#!/usr/bin/env bash
# Seeds for fuzz_tokenizer: each test case of the shared vocab tests as its own file.
out=$1
data=${TOME_DATA:-../shared}
inp=$data/tokenizers/cases.inp
[ -f "$inp" ] || exit 0
python3 - "$inp" "$out" <<'PY' 2>/dev/null || cp "$inp" "$out/cases.inp"
import sys
cases = open(sys.argv[1], 'rb').read().split(b'\n__ggml_vocab_test__\n')
for i, c in enumerate(cases):
    open('%s/case%02d' % (sys.argv[2], i), 'wb').write(c)
PY
exit 0

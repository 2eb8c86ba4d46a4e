#!/usr/bin/env bash
# compare_llamacpp.sh — tome bench vs llama.cpp's llama-bench on the same synthetic models.
#
#   tools/compare_llamacpp.sh LLAMA_BENCH [-p 128] [-n 64] [-t 2] [-r 3] [--presets "f16 q8_0 q4_k_m"]
#                             [--dir DIR] [--shape "EMBD LAYERS HEADS HEADS_KV FF"]
#
# LLAMA_BENCH is the path of an existing llama-bench binary (build llama.cpp yourself, outside
# this repository; nothing here builds or downloads it). The models are made by build/mkgguf
# (run ./build.sh first) in the 125M-parameter Llama shape — 768 wide, 12 layers, 12/4 heads,
# FF 2048 — with Llama 2's 32000-token SentencePiece vocabulary copied from
# $TOME_DATA/vocab/ggml-vocab-llama-spm.gguf so llama.cpp accepts the file. Both programs get
# the same prompt / generation sizes and thread count, one model at a time, and both time their
# tests from an empty cache; the table compares llama-bench's mean with tome's mean (tome's
# best is shown too), and each row carries the 1-minute load average when it was measured:
# on a shared machine, quote the numbers with it.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '3,4p' "$0" | sed 's/^# *//' >&2; exit 1; }
[ $# -ge 1 ] || usage
LB=$1; shift
P=128 N=64 T=2 R=3 PRESETS="f16 q8_0 q4_k_m" DIR="" SHAPE="768 12 12 4 2048"
while [ $# -gt 0 ]; do
  case $1 in
    -p) P=$2; shift 2 ;;
    -n) N=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --presets) PRESETS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -x "$LB" ] || { echo "compare_llamacpp: $LB is not an executable llama-bench" >&2; exit 1; }
[ -x ./tome ] && [ -x build/mkgguf ] || { echo "compare_llamacpp: run ./build.sh first" >&2; exit 1; }
DATA=${TOME_DATA:-../shared}
VOCAB=$DATA/vocab/ggml-vocab-llama-spm.gguf
[ -f "$VOCAB" ] || { echo "compare_llamacpp: $VOCAB not found (set TOME_DATA)" >&2; exit 2; }
if [ -z "$DIR" ]; then DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
mkdir -p "$DIR"
read -r EMBD LAYERS HEADS HEADS_KV FF <<<"$SHAPE"

load() { cut -d' ' -f1 /proc/loadavg; }
# the JSON field $2 of llama-bench's -o json entry whose n_gen is 0 (prefill) or not (decode)
lb_field() { python3 -c 'import json,sys
rows = json.load(open(sys.argv[1]))
want_pp = sys.argv[2] == "pp"
for r in rows:
    if (r["n_gen"] == 0) == want_pp: print("%.2f" % r["avg_ts"]); break' "$1" "$2"; }
tb_field() { python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
ratio() { python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print("%.2f" % (a/b) if b > 0 else "-")' "$1" "$2"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $T; pp$P, tg$N; $R repetitions"
echo "shape: n_embd $EMBD, $LAYERS layers, $HEADS/$HEADS_KV heads, FF $FF, vocab 32000"
ROWS=()
for preset in $PRESETS; do
  m=$DIR/shape-$preset.gguf
  if [ ! -f "$m" ]; then
    build/mkgguf -o "$m" --n-embd "$EMBD" --n-layer "$LAYERS" --n-head "$HEADS" --n-head-kv "$HEADS_KV" \
      --n-ff "$FF" --vocab-from "$VOCAB" --preset "$preset" >"$DIR/mkgguf-$preset.log" 2>&1 ||
      { echo "compare_llamacpp: mkgguf failed:" >&2; cat "$DIR/mkgguf-$preset.log" >&2; exit 2; }
  fi
  l1=$(load)
  if ! "$LB" -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" -o json >"$DIR/lb-$preset.json" 2>"$DIR/lb-$preset.err"; then
    echo "compare_llamacpp: llama-bench failed on $m:" >&2; tail -5 "$DIR/lb-$preset.err" >&2; exit 2
  fi
  l2=$(load)
  ./tome bench -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" --json >"$DIR/tb-$preset.json"
  lpp=$(lb_field "$DIR/lb-$preset.json" pp); ltg=$(lb_field "$DIR/lb-$preset.json" tg)
  tpp=$(tb_field "$DIR/tb-$preset.json" prefill_tok_s_mean); ttg=$(tb_field "$DIR/tb-$preset.json" decode_tok_s_mean)
  tppb=$(tb_field "$DIR/tb-$preset.json" prefill_tok_s); ttgb=$(tb_field "$DIR/tb-$preset.json" decode_tok_s)
  gbs=$(tb_field "$DIR/tb-$preset.json" decode_weight_gb_s); bw=$(tb_field "$DIR/tb-$preset.json" read_bw_gb_s)
  frac=$(python3 -c 'import sys; print("%.0f%%" % (100*float(sys.argv[1])))' "$(tb_field "$DIR/tb-$preset.json" read_bw_fraction)")
  ROWS+=("| $preset | $lpp | $tpp ($tppb) | $(ratio "$tpp" "$lpp") | $ltg | $ttg ($ttgb) | $(ratio "$ttg" "$ltg") | $gbs of $bw ($frac) | $l1 / $l2 / $(load) |")
done
echo
echo "| model | llama.cpp pp$P tok/s | tome pp$P tok/s mean (best) | ratio | llama.cpp tg$N tok/s | tome tg$N tok/s mean (best) | ratio | tome decode weight GB/s of read BW | load (before llama / before tome / after) |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"

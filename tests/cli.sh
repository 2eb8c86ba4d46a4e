#!/usr/bin/env bash
# cli.sh — tests ./tome as a user runs it: output, exit codes, messages.
#
# The cases live in tests/cli.d/*.sh (one file per area); each is sourced here and uses the
# helpers below. The last line is `N passed, N failed, N skipped`.
#   expect_exit CODE NAME -- CMD...     runs CMD, checks its exit code; output in $OUT / $ERR
#   expect_out  PATTERN NAME            grep -E PATTERN in the last command's stdout
#   expect_err  PATTERN NAME            ... in its stderr
#   skip NAME REASON
set -u
cd "$(dirname "$0")/.."
TOME=${TOME:-./tome}
TOME_DATA=${TOME_DATA:-../shared}
export TOME_DATA
TMP=$(mktemp -d /tmp/tome-cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PASS=0 FAILN=0 SKIPN=0
OUT= ERR= RC=0

ok()   { PASS=$((PASS + 1)); echo "PASS $1"; }
bad()  { FAILN=$((FAILN + 1)); echo "FAIL $1: $2"; }
skip() { SKIPN=$((SKIPN + 1)); echo "SKIP $1: $2"; }

# run CMD...: runs with stdout/stderr captured into $OUT/$ERR and the status into $RC.
run() {
  "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  RC=$?
  OUT=$(cat "$TMP/out"); ERR=$(cat "$TMP/err")
}
# run_in INPUTFILE CMD...: like run, with stdin from INPUTFILE.
run_in() {
  local in=$1; shift
  "$@" >"$TMP/out" 2>"$TMP/err" <"$in"
  RC=$?
  OUT=$(cat "$TMP/out"); ERR=$(cat "$TMP/err")
}

expect_exit() {
  local code=$1 name=$2; shift 3
  run "$@"
  if [ "$RC" -eq "$code" ]; then ok "$name"
  else bad "$name" "exit $RC, expected $code; stderr: $(echo "$ERR" | head -n 3)"; fi
}
expect_out() { if grep -Eq -- "$1" "$TMP/out"; then ok "$2"; else bad "$2" "stdout lacks /$1/: $(head -c 300 "$TMP/out")"; fi; }
expect_err() { if grep -Eq -- "$1" "$TMP/err"; then ok "$2"; else bad "$2" "stderr lacks /$1/: $(head -c 300 "$TMP/err")"; fi; }
have_data()  { [ -e "$TOME_DATA/$1" ]; }

if [ ! -x "$TOME" ]; then
  echo "FAIL cli: $TOME not built"
  echo "0 passed, 1 failed"
  exit 1
fi

for f in tests/cli.d/*.sh; do
  [ -e "$f" ] || continue
  case "$f" in *"${TOME_CLI_ONLY:-}"*) ;; *) continue ;; esac # TOME_CLI_ONLY=70-device: one file
  echo "--- $f"
  # shellcheck disable=SC1090
  . "$f"
done

echo "$PASS passed, $FAILN failed, $SKIPN skipped"
[ "$FAILN" -eq 0 ]

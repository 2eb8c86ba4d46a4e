#!/usr/bin/env bash
# build.sh — builds tome and everything around it. Plain bash, no make.
#
#   ./build.sh          ./tome and the tools in build/ (mkgguf, ...)
#   ./build.sh test     everything a commit must pass; the last line is `N passed, N failed`
#   ./build.sh unit [F] ./tome, then the unit tests whose name or file contains F (quick loop)
#   ./build.sh asan     unit tests under AddressSanitizer + UBSan only
#   ./build.sh fuzz [S] libFuzzer targets for S seconds each (default 30)
#   ./build.sh debug    ./tome with -O0 -g and sanitizers
#   ./build.sh clean
#
# Environment: CC (default cc), TOME_DATA (test data, default ../shared), FUZZ_SECONDS,
# TOME_NO_WERROR=1 (local experiments only: warnings stay warnings; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")"

CC=${CC:-cc}
JOBS=$(nproc 2>/dev/null || echo 2)
WARN="-Wall -Wextra -Werror"
[ "${TOME_NO_WERROR:-0}" = 1 ] && WARN="-Wall -Wextra"
BASE="-std=c11 -D_GNU_SOURCE -Ilib -pthread"
CFLAGS_REL="$BASE -O2 -g $WARN"
CFLAGS_SAN="$BASE -O1 -g $WARN -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
# PCRE2 and jansson are linked statically so ./tome needs only libc, libm, libdl, pthreads.
LIBS_STATIC="-Wl,-Bstatic -l:libpcre2-8.a -l:libjansson.a -Wl,-Bdynamic -lm -ldl -lpthread"
LIBS_SAN="-lpcre2-8 -ljansson -lm -ldl -lpthread"

# ---- dependencies -----------------------------------------------------------------------
# Debian packages the build needs, each with a file that shows it is installed.
DEPS=(
  "libstb-dev:/usr/include/stb/stb_ds.h"
  "libpcre2-dev:/usr/include/pcre2.h"
  "libjansson-dev:/usr/include/jansson.h"
  "clang:/usr/bin/clang"
  "python3:/usr/bin/python3"
  "libclang-rt-dev:$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || echo /nonexistent)"
)
ensure_deps() {
  local missing=()
  for d in "${DEPS[@]}"; do
    [ -e "${d#*:}" ] || missing+=("${d%%:*}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build.sh: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "build.sh: missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

# ---- PTX ----------------------------------------------------------------------------------
# Every ptx/*.ptx is assembled by ptxas (sm_80, sm_90) when ptxas exists; the cubins and the
# PTX text are embedded into build/<variant>/ptx_embed.c (tools/ptx_embed.sh).
PTXAS=${PTXAS:-$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)}
build_ptx() {
  local out=$1
  mkdir -p "$out"
  if [ -x tools/ptx_embed.sh ]; then
    tools/ptx_embed.sh "$PTXAS" "$out"
  fi
}

# ---- compile ------------------------------------------------------------------------------
lib_sources() { find lib -name '*.c' | sort; }

# compile_lib VARIANT "CFLAGS": objects of lib/ into build/VARIANT/obj, archive libtome.a
# Objects go to a private folder and the archive is renamed into place, so that two builds
# running at once in one checkout never see each other's half-written files.
compile_lib() {
  local v=$1 flags=$2 dir=build/$1
  local obj=$dir/obj.$$
  rm -rf "$obj"; mkdir -p "$obj"
  build_ptx "$dir/ptx.$$"
  local srcs
  srcs="$(lib_sources) $dir/ptx.$$/ptx_embed.c"
  # shellcheck disable=SC2086
  if ! printf '%s\n' $srcs | xargs -P "$JOBS" -I{} sh -c \
    'o='"$obj"'/$(echo {} | tr / _ ).o; '"$CC $flags"' -c {} -o "$o"'; then
    rm -rf "$obj" "$dir/ptx.$$"; return 1
  fi
  ar rcs "$dir/libtome.a.$$" "$obj/"*.o
  mv -f "$dir/libtome.a.$$" "$dir/libtome.a"
  cp "$dir/ptx.$$/ptx_embed.c" "$dir/ptx.$$/ptxas.log" "$dir/" 2>/dev/null || true
  rm -rf "$obj" "$dir/ptx.$$"
}

build_tome() {
  compile_lib rel "$CFLAGS_REL"
  $CC $CFLAGS_REL main.c build/rel/libtome.a $LIBS_STATIC -o tome.$$ && mv -f tome.$$ tome
  for t in tools/*.c; do
    [ -e "$t" ] || continue
    local b=build/$(basename "$t" .c)
    $CC $CFLAGS_REL "$t" build/rel/libtome.a $LIBS_STATIC -o "$b.$$" && mv -f "$b.$$" "$b"
  done
}

test_sources() { ls tests/*.c | grep -v -e '/fuzz_' -e '/fake_'; }

build_tests() { # build_tests VARIANT "CFLAGS" "LIBS"
  $CC $2 -Itests $(test_sources) "build/$1/libtome.a" $3 -o "build/tests-$1.$$" &&
    mv -f "build/tests-$1.$$" "build/tests-$1"
}

# ---- test stages --------------------------------------------------------------------------
# Each stage prints its own `N passed, N failed` last; totals are summed at the end.
TOTAL_P=0 TOTAL_F=0 TOTAL_S=0
record() { # record LOGFILE STATUS
  local line p f s
  line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 || true)
  if [ -z "$line" ]; then p=0; f=1; s=0
  else
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  fi
  [ "$2" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  TOTAL_P=$((TOTAL_P + p)) TOTAL_F=$((TOTAL_F + f)) TOTAL_S=$((TOTAL_S + s))
}

stage() { # stage NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  local log=build/log-$name.txt st
  set +e
  "$@" 2>&1 | tee "$log"
  st=${PIPESTATUS[0]}
  set -e
  record "$log" "$st"
}

run_fuzz() {
  local secs=${FUZZ_SECONDS:-${1:-30}} data=${TOME_DATA:-../shared} p=0 f=0
  [ -f build/rel/ptx_embed.c ] || build_ptx build/rel
  mkdir -p build
  # the library once for every target, JOBS files at a time (instrumented, not linked with
  # libFuzzer's main); then each target links its own main against the objects. The SIMD
  # kernel files are compiled plain: no fuzz target reaches them, and clang takes minutes to
  # instrument their unrolled intrinsics.
  local fsan="-fsanitize=address,undefined -fno-sanitize-recover=undefined" fobj=build/fuzz-obj.$$
  rm -rf "$fobj"; mkdir -p "$fobj"
  local lib_ok=1
  { lib_sources; ls build/rel/ptx_embed.c 2>/dev/null; } |
    xargs -P "$JOBS" -I{} sh -c 'o=$1/$(echo "$2" | tr / _).o
      case $2 in lib/cpu/simd*.c) f="-O1" ;; *) f="-O1 -g -fsanitize=fuzzer-no-link $4" ;; esac
      clang $3 $f -Itests -c "$2" -o "$o"' sh "$fobj" {} "$BASE" "$fsan" || lib_ok=0
  for src in tests/fuzz_*.c; do
    [ -e "$src" ] || continue
    local name; name=$(basename "$src" .c)
    rm -f "build/$name"
    if [ "$lib_ok" = 0 ] || ! clang $BASE -O1 -g -fsanitize=fuzzer $fsan "$src" "$fobj"/*.o -Itests $LIBS_SAN \
      -o "build/$name"; then
      echo "FAIL $name (does not compile with clang)"; f=$((f + 1)); continue
    fi
    local corpus=build/corpus-$name seeds=build/seeds-$name
    rm -rf "$corpus" "$seeds"; mkdir -p "$corpus" "$seeds"
    # seeds: the first 64 KiB of each GGUF under TOME_DATA plus any the target writes itself
    if [ -d "$data" ]; then
      find "$data" -name '*.gguf' | while read -r g; do head -c 65536 "$g" > "$seeds/$(basename "$g")"; done
    fi
    # a target may add seeds of its own: tests/fuzz_NAME.seeds.sh SEEDDIR
    [ -x "tests/$name.seeds.sh" ] && "tests/$name.seeds.sh" "$seeds"
    if "build/$name" "$corpus" "$seeds" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -artifact_prefix=build/ \
         -print_final_stats=0 > "build/$name.log" 2>&1; then
      echo "PASS $name ($secs s, $(grep -c . "build/$name.log") log lines)"; p=$((p + 1))
    else
      tail -n 40 "build/$name.log"; echo "FAIL $name"; f=$((f + 1))
    fi
  done
  rm -rf "$fobj"
  echo "$p passed, $f failed"
  [ "$f" -eq 0 ]
}

# The GPU host code (driver layer, CUDA backend, device choice) run against tests/fake_cuda.c, a
# stand-in libcuda.so.1 that emulates each kernel in C: it checks buffer sizes, launch geometry,
# parameter order and error paths on machines without a GPU — not the PTX (tests/gpu.sh does).
# LD_LIBRARY_PATH is set per command only: every other stage must still see no GPU.
build_fake_cuda() {
  mkdir -p build/fake
  gcc $BASE -DTOME_FAKE_CUDA -O2 $WARN -shared -fPIC -Wl,--no-undefined -o build/fake/libcuda.so.1 \
    tests/fake_cuda.c lib/quant.c lib/rope.c lib/util.c lib/gguf.c lib/stb_ds.c lib/arch.c lib/kvcache.c -lm
}

cmd_test() {
  ensure_deps
  build_tome
  compile_lib san "$CFLAGS_SAN"
  build_tests rel "$CFLAGS_REL" "$LIBS_STATIC"
  build_tests san "$CFLAGS_SAN" "$LIBS_SAN"
  stage unit build/tests-rel
  stage cli bash tests/cli.sh
  stage asan env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/tests-san
  if build_fake_cuda; then
    stage gpu-emu env LD_LIBRARY_PATH=build/fake build/tests-rel gpu_e2e_ device gpu_op_gemm_ test_cuda_fa
    stage gpu-emu-cli env TOME_CLI_ONLY=70-device LD_LIBRARY_PATH=build/fake bash tests/cli.sh
  else
    echo "FAIL gpu-emu: tests/fake_cuda.c does not build"; TOTAL_F=$((TOTAL_F + 1))
  fi
  stage fuzz run_fuzz
  echo "=== total"
  echo "$TOTAL_P passed, $TOTAL_F failed, $TOTAL_S skipped"
  [ "$TOTAL_F" -eq 0 ]
}

case "${1:-}" in
  "") ensure_deps; build_tome ;;
  test) cmd_test ;;
  unit) ensure_deps; build_tome; build_tests rel "$CFLAGS_REL" "$LIBS_STATIC"; shift; build/tests-rel "$@" ;;
  asan) ensure_deps; compile_lib san "$CFLAGS_SAN"; build_tests san "$CFLAGS_SAN" "$LIBS_SAN"
        shift; build/tests-san "$@" ;;
  fuzz) ensure_deps; shift; run_fuzz "${1:-30}" ;;
  debug) ensure_deps; compile_lib dbg "$BASE -O0 -g $WARN -fsanitize=address,undefined"
         $CC $BASE -O0 -g $WARN -fsanitize=address,undefined main.c build/dbg/libtome.a $LIBS_SAN -o tome ;;
  clean) rm -rf build tome ;;
  *) echo "usage: ./build.sh [test|unit [FILTER]|asan [FILTER]|fuzz [SECONDS]|debug|clean]" >&2; exit 1 ;;
esac

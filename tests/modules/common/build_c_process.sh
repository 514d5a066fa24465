#!/usr/bin/env bash
# Builds one of ao-cu's C test processes with Debian's emscripten 3.1.6 (format wasm32-unknown-emscripten2):
#
#   build_c_process.sh <label> <source.c> <output.wasm> <ao_tensor import>...
#
# Links <source.c> (which may include ../common/ao_msg.h) into <output.wasm>, then checks that the module
# imports every named ao_tensor function under module ao_tensor and exports what the emscripten2 glue needs.
# Incremental: skipped when the output is newer than the source, ao_msg.h, this script and the caller's
# build.sh (FORCE=1 rebuilds). Used by tests/modules/tensor/build.sh and tests/modules/llm/build.sh.
set -euo pipefail

label="$1" src="$2" wasm="$3"
shift 3
common="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
caller="$(dirname "$src")/build.sh"
mkdir -p "$(dirname "$wasm")"
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
EMCC="${EMCC:-emcc}"
js="${wasm%.wasm}.js"
name="$(basename "$wasm")"

die() { echo "$label: error: $*" >&2; exit 1; }
command -v "$EMCC" >/dev/null 2>&1 || die "emcc not found"
command -v wasm-objdump >/dev/null 2>&1 || die "wasm-objdump (wabt) not found"
case "$("$EMCC" --version | sed -n 1p)" in
  *" 3.1.6 "*|*" 3.1.6") ;;
  *) die "expected emscripten 3.1.6 (Debian's emcc)" ;;
esac

if [ "${FORCE:-0}" != 1 ] && [ -e "$wasm" ]; then
  stale=0
  for input in "$src" "$common/ao_msg.h" "${BASH_SOURCE[0]}" "$caller"; do
    [ "$input" -nt "$wasm" ] && stale=1
  done
  if [ "$stale" = 0 ]; then
    echo "$label: $name up to date" >&2
    exit 0
  fi
fi
echo "$label: linking $name" >&2
rm -f "$js" "$wasm"
"$EMCC" -O2 -Wall -Werror "$src" \
  -s WASM=1 -s ALLOW_MEMORY_GROWTH=1 -s INITIAL_MEMORY=16777216 -s MAXIMUM_MEMORY=1073741824 \
  -s TOTAL_STACK=5242880 -s SUPPORT_LONGJMP=1 -s MODULARIZE=1 -s DETERMINISTIC=1 -s ASSERTIONS=1 \
  -s ERROR_ON_UNDEFINED_SYMBOLS=0 \
  -s EXPORTED_FUNCTIONS='["_malloc","_main","_handle","_fflush"]' -s EXPORTED_RUNTIME_METHODS='["cwrap"]' \
  -o "$js"
[ -s "$wasm" ] || die "emcc produced no $wasm"

# Every ao_tensor import the source declares must be in the module, under module ao_tensor.
imports="$(wasm-objdump -x -j Import "$wasm" | sed -n 's/.*<- \([^ ]*\)$/\1/p')"
for import in "$@"; do
  grep -qx "ao_tensor.$import" <<<"$imports" || die "$wasm does not import ao_tensor.$import"
done
exports="$(wasm-objdump -x -j Export "$wasm")"
for export in memory handle main malloc __indirect_function_table stackSave stackRestore stackAlloc; do
  grep -q "\"$export\"" <<<"$exports" || die "$wasm does not export $export"
done
echo "$label: done: $wasm" >&2

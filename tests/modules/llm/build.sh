#!/usr/bin/env bash
# Builds the ao-cu language-model test process tests/modules/build/llm-generate.wasm (format
# wasm32-unknown-emscripten2) from tests/modules/llm/generate.c with Debian's emscripten 3.1.6.
# Its ao_tensor.model_* imports are served by crates/cu-wasm/src/host/model.rs (docs/tensor-api.md).
# Called at the end of tests/modules/build.sh; incremental (FORCE=1 rebuilds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../build"
mkdir -p "$out"
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
EMCC="${EMCC:-emcc}"
wasm="$out/llm-generate.wasm"
js="${wasm%.wasm}.js"

die() { echo "llm/build.sh: error: $*" >&2; exit 1; }
command -v "$EMCC" >/dev/null 2>&1 || die "emcc not found"
command -v wasm-objdump >/dev/null 2>&1 || die "wasm-objdump (wabt) not found"
case "$("$EMCC" --version | sed -n 1p)" in
  *" 3.1.6 "*|*" 3.1.6") ;;
  *) die "expected emscripten 3.1.6 (Debian's emcc)" ;;
esac

if [ "${FORCE:-0}" != 1 ] && [ -e "$wasm" ] && [ ! "$here/generate.c" -nt "$wasm" ] && [ ! "$here/build.sh" -nt "$wasm" ] && [ ! "$here/../common/ao_msg.h" -nt "$wasm" ]; then
  echo "llm/build.sh: llm-generate.wasm up to date" >&2
  exit 0
fi
echo "llm/build.sh: linking llm-generate.wasm" >&2
rm -f "$js" "$wasm"
"$EMCC" -O2 -Wall -Werror "$here/generate.c" \
  -s WASM=1 -s ALLOW_MEMORY_GROWTH=1 -s INITIAL_MEMORY=16777216 -s MAXIMUM_MEMORY=1073741824 \
  -s TOTAL_STACK=5242880 -s SUPPORT_LONGJMP=1 -s MODULARIZE=1 -s DETERMINISTIC=1 -s ASSERTIONS=1 \
  -s ERROR_ON_UNDEFINED_SYMBOLS=0 \
  -s EXPORTED_FUNCTIONS='["_malloc","_main","_handle","_fflush"]' -s EXPORTED_RUNTIME_METHODS='["cwrap"]' \
  -o "$js"
[ -s "$wasm" ] || die "emcc produced no $wasm"

# Every ao_tensor import the source declares must be in the module, under module ao_tensor.
imports="$(wasm-objdump -x -j Import "$wasm" | sed -n 's/.*<- \([^ ]*\)$/\1/p')"
for name in model_open model_info model_chat model_detokenize model_forward model_forward_batch; do
  grep -qx "ao_tensor.$name" <<<"$imports" || die "$wasm does not import ao_tensor.$name"
done
exports="$(wasm-objdump -x -j Export "$wasm")"
for name in memory handle main malloc __indirect_function_table stackSave stackRestore stackAlloc; do
  grep -q "\"$name\"" <<<"$exports" || die "$wasm does not export $name"
done
echo "llm/build.sh: done: $wasm" >&2

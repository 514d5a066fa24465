#!/usr/bin/env bash
# Builds the ao-cu inference test process tests/modules/build/tensor-infer.wasm (format
# wasm32-unknown-emscripten2) from tests/modules/tensor/infer.c with Debian's emscripten 3.1.6.
# Its ao_tensor imports are served by crates/cu-wasm/src/host/tensor.rs (docs/tensor-api.md).
# Called at the end of tests/modules/build.sh; incremental (FORCE=1 rebuilds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../build"
mkdir -p "$out"
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
EMCC="${EMCC:-emcc}"
wasm="$out/tensor-infer.wasm"
js="${wasm%.wasm}.js"

die() { echo "tensor/build.sh: error: $*" >&2; exit 1; }
command -v "$EMCC" >/dev/null 2>&1 || die "emcc not found"
command -v wasm-objdump >/dev/null 2>&1 || die "wasm-objdump (wabt) not found"
case "$("$EMCC" --version | sed -n 1p)" in
  *" 3.1.6 "*|*" 3.1.6") ;;
  *) die "expected emscripten 3.1.6 (Debian's emcc)" ;;
esac

if [ "${FORCE:-0}" != 1 ] && [ -e "$wasm" ] && [ ! "$here/infer.c" -nt "$wasm" ] && [ ! "$here/build.sh" -nt "$wasm" ] && [ ! "$here/../common/ao_msg.h" -nt "$wasm" ]; then
  echo "tensor/build.sh: tensor-infer.wasm up to date" >&2
  exit 0
fi
echo "tensor/build.sh: linking tensor-infer.wasm" >&2
rm -f "$js" "$wasm"
"$EMCC" -O2 -Wall -Werror "$here/infer.c" \
  -s WASM=1 -s ALLOW_MEMORY_GROWTH=1 -s INITIAL_MEMORY=16777216 -s MAXIMUM_MEMORY=1073741824 \
  -s TOTAL_STACK=5242880 -s SUPPORT_LONGJMP=1 -s MODULARIZE=1 -s DETERMINISTIC=1 -s ASSERTIONS=1 \
  -s ERROR_ON_UNDEFINED_SYMBOLS=0 \
  -s EXPORTED_FUNCTIONS='["_malloc","_main","_handle","_fflush"]' -s EXPORTED_RUNTIME_METHODS='["cwrap"]' \
  -o "$js"
[ -s "$wasm" ] || die "emcc produced no $wasm"

# Every ao_tensor import the source declares must be in the module, under module ao_tensor.
imports="$(wasm-objdump -x -j Import "$wasm" | sed -n 's/.*<- \([^ ]*\)$/\1/p')"
for name in matmul_i8 requantize add_i8 add_i32 relu_i8 relu_i32 softmax_argmax; do
  grep -qx "ao_tensor.$name" <<<"$imports" || die "$wasm does not import ao_tensor.$name"
done
exports="$(wasm-objdump -x -j Export "$wasm")"
for name in memory handle main malloc __indirect_function_table stackSave stackRestore stackAlloc; do
  grep -q "\"$name\"" <<<"$exports" || die "$wasm does not export $name"
done
echo "tensor/build.sh: done: $wasm" >&2

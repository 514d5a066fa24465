#!/usr/bin/env bash
# Builds the WeaveDrive probe tests/modules/build/weavedrive-probe.wasm (format wasm32-unknown-emscripten4)
# from tests/modules/drive/{probe.c,stack.s}: clang-14 for wasm32 without libc, wasm-ld, then binaryen's
# `wasm-opt --asyncify` over the three WeaveDrive imports, as emcc's ASYNCIFY does for EM_ASYNC_JS
# imports. All three tools come with Debian's emscripten package.
# Called at the end of tests/modules/build.sh; incremental (FORCE=1 rebuilds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../build"
mkdir -p "$out"
wasm="$out/weavedrive-probe.wasm"
LLVM="${LLVM:-/usr/lib/llvm-14/bin}"

die() { echo "drive/build.sh: error: $*" >&2; exit 1; }
[ -x "$LLVM/clang" ] || die "$LLVM/clang not found (apt-get install clang-14)"
[ -x "$LLVM/wasm-ld" ] || die "$LLVM/wasm-ld not found (apt-get install lld-14)"
command -v wasm-opt >/dev/null 2>&1 || die "wasm-opt not found (apt-get install binaryen)"
command -v wasm-objdump >/dev/null 2>&1 || die "wasm-objdump (wabt) not found"

if [ "${FORCE:-0}" != 1 ] && [ -e "$wasm" ] && [ ! "$here/probe.c" -nt "$wasm" ] &&
  [ ! "$here/stack.s" -nt "$wasm" ] && [ ! "$here/build.sh" -nt "$wasm" ]; then
  echo "drive/build.sh: weavedrive-probe.wasm up to date" >&2
  exit 0
fi
echo "drive/build.sh: building weavedrive-probe.wasm" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$LLVM/clang" --target=wasm32 -O2 -Wall -Werror -nostdlib -fno-builtin -c "$here/probe.c" -o "$tmp/probe.o"
"$LLVM/clang" --target=wasm32 -c "$here/stack.s" -o "$tmp/stack.o"
"$LLVM/wasm-ld" --no-entry --export-table --export=__wasm_call_ctors \
  --initial-memory=16777216 --max-memory=1073741824 -z stack-size=1048576 \
  "$tmp/probe.o" "$tmp/stack.o" -o "$tmp/plain.wasm"
wasm-opt -O2 --asyncify \
  --pass-arg=asyncify-imports@env.__asyncjs__weavedrive_open,env.__asyncjs__weavedrive_read,env.__asyncjs__weavedrive_close \
  "$tmp/plain.wasm" -o "$tmp/probe.wasm"

# The exports the emscripten4 glue and ao-cu call.
exports="$(wasm-objdump -x -j Export "$tmp/probe.wasm")"
for name in memory handle main malloc free __indirect_function_table __wasm_call_ctors \
  emscripten_stack_get_current _emscripten_stack_restore _emscripten_stack_alloc \
  asyncify_start_unwind asyncify_stop_unwind asyncify_start_rewind asyncify_stop_rewind; do
  grep -q "\"$name\"" <<<"$exports" || die "the probe does not export $name"
done
mv "$tmp/probe.wasm" "$wasm"
echo "drive/build.sh: done: $wasm" >&2

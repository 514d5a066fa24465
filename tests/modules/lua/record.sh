#!/usr/bin/env bash
# Records what the reference loader answers for the Lua test process on every message log, for tests that
# compare ao-cu against it without running node themselves:
#   tests/modules/build/expected/lua-process/<log>.jsonl          (lua-process.wasm, mode cu)
#   tests/modules/build/expected/lua-process-metered/<log>.jsonl  (lua-process-metered.wasm, mode cu; the
#                                                                   default compute limit, 9e15, except
#                                                                   loop.jsonl: --compute-limit 9000000000)
# Fixed inputs: --this-program thisProgram (run.cjs pins TZ=UTC). loop.jsonl is only recorded for the
# metered module (the un-metered reference never returns), grow.jsonl and oom.jsonl only for the plain one.
# Each recording's stderr is kept beside it (<log>.jsonl.stderr). Skips a recording newer than its inputs.
#   tests/modules/lua/record.sh        (runs tests/modules/build.sh first; about 1 min from scratch)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
build="$repo/tests/modules/build"
run_cjs="$repo/tests/oracle/run.cjs"
COMPUTE_LIMIT=9000000000

"$repo/tests/modules/build.sh"
[ -d "$repo/tests/oracle/node_modules/@permaweb/ao-loader" ] || npm ci --prefix "$repo/tests/oracle" --no-audit --no-fund >&2

record() {
  local module="$1" log="$2"; shift 2
  local name out
  name="$(basename "${module%.wasm}")"
  out="$build/expected/$name/$(basename "$log")"
  mkdir -p "$(dirname "$out")"
  if [ -e "$out" ] && [ "$out" -nt "$module" ] && [ "$out" -nt "$log" ] && [ "$out" -nt "$run_cjs" ]; then
    return
  fi
  echo "record.sh: $name $(basename "$log")" >&2
  node "$run_cjs" --module "$module" --format wasm32-unknown-emscripten2 --this-program thisProgram \
    --messages "$log" "$@" > "$out.tmp" 2> "$out.stderr"
  mv "$out.tmp" "$out"
}

for log in "$here"/*.jsonl; do
  case "$(basename "$log")" in
    loop.jsonl) record "$build/lua-process-metered.wasm" "$log" --compute-limit "$COMPUTE_LIMIT" ;;
    # metered, these cost too much in the reference: Grow MB=100 7.4e11 gas (73 s), Grow MB=600 until
    # out of memory 320 s; only the plain module is recorded
    grow.jsonl|oom.jsonl) record "$build/lua-process.wasm" "$log" ;;
    *)
      record "$build/lua-process.wasm" "$log"
      record "$build/lua-process-metered.wasm" "$log"
      ;;
  esac
done
echo "record.sh: recordings in $build/expected/" >&2

#!/usr/bin/env bash
# Runs every probe module (*.wat) with every message log (messages/*.jsonl) through the reference
# loader (tests/oracle/run.cjs, @permaweb/ao-loader@0.0.49, mode cu) and writes what it printed to
# expected/<module>/<log>.jsonl (one result line per message).
#
#   tests/modules/wat/oracle.sh [OUT_DIR]        # default OUT_DIR: tests/modules/wat/expected
#
# Needs: wat2wasm (apt: wabt), node >= 20, `npm ci` done in tests/oracle.
# Fixed inputs so the recording is reproducible on any machine: TZ=UTC, --this-program thisProgram
# (the glue otherwise leaks the driver's script path into argv[0] and `_=` in environ).
# `loop` runs with --compute-limit 10000000; the formats without metering never stop, so that run is
# cut after LOOP_TIMEOUT seconds and a final line {"OracleTimeout":<seconds>} is appended.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$here/expected}
loop_timeout=${LOOP_TIMEOUT:-10}
run_cjs=$root/tests/oracle/run.cjs

command -v wat2wasm >/dev/null || { echo "oracle.sh: wat2wasm not found (apt-get install wabt)" >&2; exit 2; }
[ -d "$root/tests/oracle/node_modules/@permaweb/ao-loader" ] ||
  { echo "oracle.sh: run 'npm ci' in tests/oracle first" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -A FORMAT=(
  [emscripten1-minified]=wasm32-unknown-emscripten
  [emscripten2]=wasm32-unknown-emscripten2
  [emscripten3]=wasm32-unknown-emscripten3
  [emscripten4]=wasm32-unknown-emscripten4
  [emscripten-metering]=wasm32-unknown-emscripten-metering
  [wasm64]=wasm64-unknown-emscripten-draft_2024_02_15
  [wasm64-metering]=wasm64-unknown-emscripten-draft_2024_10_16-metering
)

for module in emscripten1-minified emscripten2 emscripten3 emscripten4 emscripten-metering wasm64 wasm64-metering; do
  wat2wasm --enable-all "$here/$module.wat" -o "$tmp/$module.wasm"
  mkdir -p "$out/$module"
  for log_file in "$here"/messages/*.jsonl; do
    log=$(basename "$log_file" .jsonl)
    args=(--module "$tmp/$module.wasm" --format "${FORMAT[$module]}" --mode cu
          --messages "$log_file" --this-program thisProgram)
    limit=120
    if [ "$log" = loop ]; then
      args+=(--compute-limit 10000000)
      limit=$loop_timeout
    fi
    rc=0
    TZ=UTC timeout "$limit" node --experimental-wasm-memory64 "$run_cjs" "${args[@]}" \
      >"$out/$module/$log.jsonl" 2>"$tmp/stderr" || rc=$?
    if [ "$rc" = 124 ]; then
      echo "{\"OracleTimeout\":$limit}" >>"$out/$module/$log.jsonl"
    elif [ "$rc" != 0 ]; then
      echo "oracle.sh: $module/$log: run.cjs exited $rc" >&2
      cat "$tmp/stderr" >&2
      exit 1
    fi
    echo "$module/$log: $(wc -l <"$out/$module/$log.jsonl") line(s)"
  done
done

#!/usr/bin/env bash
# HTTP benchmarks of `ao-cu serve` on loopback:
#   1. ingest: signed data item -> scheduled -> evaluated -> result readable (throughput, p50/p99);
#   2. GET /result spread over every computed result (wrk, random path per request);
#   3. POST /dry-run with a different body per request (wrk), so the result cache is not what is measured.
# Needs: wrk (Debian), node + tests/e2e/node_modules, tests/modules/build/lua-process.wasm.
# Env: MESSAGES (10000), CONCURRENCY (16), DURATION (15s), CONNECTIONS (32), THREADS (2).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MESSAGES="${MESSAGES:-10000}"
CONCURRENCY="${CONCURRENCY:-16}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"

nice -n 10 cargo build --release -q -p ao-cu --manifest-path "$repo/Cargo.toml"
work="$(mktemp -d)"
trap 'kill -TERM "${server:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$CARGO_TARGET_DIR/release/ao-cu" serve --host 127.0.0.1 --port 0 --data-dir "$work/data" \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 1 120); do grep -q 'listening on' "$work/serve.out" && break; sleep 0.5; done
addr="$(grep -o 'listening on [0-9.:]*' "$work/serve.out" | awk '{print $3}')"
url="http://$addr"
echo "server: $url (data $work/data)"

echo "== ingest: $MESSAGES messages, $CONCURRENCY in flight"
node "$repo/bench/http/bench.mjs" ingest "$url" "$repo/tests/modules/build/lua-process.wasm" \
  "$MESSAGES" "$CONCURRENCY" "$work"

echo "== GET /result over $(wc -l <"$work/paths.txt") distinct results"
PATHS="$work/paths.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
  -s "$repo/bench/http/result.lua" "$url"

echo "== POST /dry-run, a new body every request"
PROCESS="$(cat "$work/process.txt")" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
  -s "$repo/bench/http/dryrun.lua" "$url"

echo "== server metrics (dry-run and evaluation counters)"
curl -s "$url/metrics" | grep -E '^ao_cu_(evaluations|dry_runs)_total' || true

#!/usr/bin/env bash
# Failover time of active/standby ao-cu on a shared PostgreSQL store and S3 checkpoints (docs/deploy.md):
# node A serves (aoconnect drives tests/e2e/aoconnect.mjs run: two processes, their messages, results,
# checkpoints in S3), node B stands by; A is killed with SIGKILL; the script times until B answers
# /healthcheck and until B has answered every recorded result identically plus a dry-run on the
# process (tests/e2e/aoconnect.mjs verify). Throwaway PostgreSQL and s3s-fs servers on loopback.
#   usage: bench/failover.sh [TTL_MS]     (the lease's time to live, default 2000; release build used)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
ttl=${1:-2000}
. bench/engines.sh
shared=(--host 127.0.0.1 "${engines[@]}" --checkpoint-every-messages 1 --store-lease-ttl-ms "$ttl")
pa="$(port)"; pb="$(port)"
AO_CU_LOG=warn "$bin" serve "${shared[@]}" --port "$pa" --data-dir "$work/a" --store-lease node-a >"$work/a.log" 2>&1 &
a=$!; pids+=("$a")
wait_http "http://127.0.0.1:$pa"
(cd tests/e2e && node aoconnect.mjs run "http://127.0.0.1:$pa" "$repo/tests/modules/build/lua-process.wasm" "$work/state.json" >/dev/null)
mkdir -p "$work/b"; cp "$work/a/wallet.json" "$work/b/wallet.json"
AO_CU_LOG=warn "$bin" serve "${shared[@]}" --port "$pb" --data-dir "$work/b" --store-lease node-b >"$work/b.log" 2>&1 &
pids+=($!)
sleep 2
t0=$(ms); kill -9 "$a"; wait "$a" 2>/dev/null || true
wait_http "http://127.0.0.1:$pb"; t1=$(ms)
(cd tests/e2e && node aoconnect.mjs verify "http://127.0.0.1:$pb" "$work/state.json" >/dev/null); t2=$(ms)
# The same client run again on the now warm node: what the client itself costs.
(cd tests/e2e && node aoconnect.mjs verify "http://127.0.0.1:$pb" "$work/state.json" >/dev/null); t3=$(ms)
echo "lease ttl ${ttl} ms: kill -9 -> standby healthy $((t1 - t0)) ms; -> every recorded result and a dry-run answered $((t2 - t0)) ms (the same client on the warm node: $((t3 - t2)) ms)"

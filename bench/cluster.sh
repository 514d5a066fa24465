#!/usr/bin/env bash
# Throughput of a cluster of ao-cu nodes through HAProxy (deploy/cluster/haproxy.cfg), and its failover
# time: throwaway PostgreSQL and s3s-fs servers on loopback, NODES `ao-cu serve --cluster-node` nodes (the
# release build), HAProxy in front. `ao-cu bench --mode http --target <proxy>` (the load generator:
# PROCESSES processes, MESSAGES messages each, 16 clients) measures ingest and results through the proxy.
# With two or more nodes, the node owning the most processes is then killed (SIGKILL) and the script times
# until every process answers a dry-run through the proxy (tests/e2e/cluster.mjs dryrun-all, aoconnect,
# started right after the kill).
#   usage: bench/cluster.sh NODES [PROCESSES] [MESSAGES] [TTL_MS]    (defaults: 100 20 2000; NODES 1..3)
#   PLAIN=1 bench/cluster.sh 1 …: the same with one node outside cluster mode (the baseline).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
nodes=${1:?usage: bench/cluster.sh NODES [PROCESSES] [MESSAGES] [TTL_MS]}
processes=${2:-100}
messages=${3:-20}
ttl=${4:-2000}
[ "$nodes" -ge 1 ] && [ "$nodes" -le 3 ] || { echo "NODES is 1, 2 or 3 (deploy/cluster/haproxy.cfg lists 3)" >&2; exit 2; }
. bench/engines.sh
ports=(); node_pids=()
start_node() {
  local i=$1
  local wallet=()
  [ -f "$work/wallet.json" ] && wallet=(--wallet-file "$work/wallet.json")
  local cluster=(--cluster-node "node$i" --cluster-url "http://127.0.0.1:${ports[$i]}" --process-lease-ttl-ms "$ttl")
  [ "${PLAIN:-}" = 1 ] && cluster=()
  AO_CU_LOG=warn "$bin" serve --host 127.0.0.1 --port "${ports[$i]}" --data-dir "$work/node$i" \
    "${engines[@]}" --checkpoint-every-messages 10 "${cluster[@]}" "${wallet[@]}" >"$work/node$i.log" 2>&1 &
  node_pids[$i]=$!; pids+=($!)
  wait_http "http://127.0.0.1:${ports[$i]}"
  [ -f "$work/wallet.json" ] || cp "$work/node$i/wallet.json" "$work/wallet.json"
}
for i in $(seq 0 $((nodes - 1))); do ports[$i]=$(port); start_node "$i"; done
proxy_port=$(port)
env_nodes=()
for k in 1 2 3; do
  if [ "$k" -le "$nodes" ]; then env_nodes+=("AO_CU_NODE$k=127.0.0.1:${ports[$((k - 1))]}")
  else env_nodes+=("AO_CU_NODE$k=127.0.0.1:1"); fi  # nothing listens there: marked down at once
done
env AO_CU_PROXY_BIND="127.0.0.1:$proxy_port" "${env_nodes[@]}" haproxy -db -f deploy/cluster/haproxy.cfg \
  >"$work/haproxy.log" 2>&1 &
pids+=($!)
proxy="http://127.0.0.1:$proxy_port"
wait_http "$proxy"
sleep 2  # the health checks take the unused server lines out
echo "nodes $nodes${PLAIN:+ (plain, not in cluster mode)}, $processes processes x $messages messages, lease $ttl ms ($(nproc) cores)"
# Throughput: ao-cu's load generator (secp256k1-signed items, 16 clients) through the proxy.
"$bin" bench --mode http --target "$proxy" --processes "$processes" --messages "$messages" --json \
  >"$work/bench.json"
python3 - "$work/bench.json" <<'EOF'
import json, sys
row = json.load(open(sys.argv[1]))["http"][0]
print(f"throughput: ingest {row['ingest_msgs_per_s']:.1f} msg/s (POST acknowledged), "
      f"{row['msgs_per_s']:.1f} msg/s to every result readable; one client at a time per process: "
      f"{row['latency_msgs_per_s']:.1f} msg/s, p50 {row['latency_ms']['p50']} ms, p99 {row['latency_ms']['p99']} ms")
EOF
if [ "$nodes" -ge 2 ]; then
  psql "$pg" -Atc "SELECT json_build_object('pids', json_agg(id)) FROM processes" >"$work/pids.json"
  victim=$(psql "$pg" -Atc "SELECT split_part(node, '@', 1) FROM cu_owner WHERE expires_ms > 0 \
    GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
  owned=$(psql "$pg" -Atc "SELECT count(*) FROM cu_owner WHERE split_part(node, '@', 1) = '$victim' AND expires_ms > 0")
  i=${victim#node}
  t0=$(ms); kill -9 "${node_pids[$i]}"
  (cd tests/e2e && node cluster.mjs dryrun-all "$proxy" "$work/pids.json")
  echo "failover: $victim (owner of $owned of $processes processes) killed; every process answered a dry-run $(( $(ms) - t0 )) ms later"
fi

# Sourced by bench/failover.sh and bench/cluster.sh: the release binary ($bin), throwaway PostgreSQL ($pg)
# and s3s-fs ($s3) servers on loopback, a work directory ($work), and helpers. Every process started is
# added to $pids and killed on exit, with the servers and the directories.
bin="${CARGO_TARGET_DIR:-$repo/target}/release/ao-cu"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p ao-cu" >&2; exit 1; }
pg_dir="$(mktemp -d)"; s3_dir="$(mktemp -d)"; work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  tests/pg/stop.sh "$pg_dir" >/dev/null 2>&1 || true
  tests/s3/stop.sh "$s3_dir" || true
  rm -rf "$pg_dir" "$s3_dir" "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ms() { date +%s%3N; }
wait_http() { for _ in $(seq 1 3000); do curl -sf "$1/healthcheck" >/dev/null 2>&1 && return 0; sleep 0.01; done; return 1; }
pg="$(tests/pg/start.sh "$pg_dir" "$(port)")"
s3="$(tests/s3/start.sh "$s3_dir" "$(port)")"
# serve's arguments for the database and the bucket.
engines=(--db-url "$pg" --checkpoint-s3-endpoint "$s3" --checkpoint-s3-bucket ao-cu-test
  --checkpoint-s3-access-key ao-cu-test --checkpoint-s3-secret-key ao-cu-test-secret)

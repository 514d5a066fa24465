#!/usr/bin/env bash
# Starts a throwaway S3-compatible server for the tests and benchmarks: s3s-fs (crates.io, a real S3
# implementation over a directory; tests/setup.sh installs it under tests/s3/.tools), on loopback, with
# its objects under DIR/root and the bucket `ao-cu-test`; requests must be signed (SigV4) with the access
# key `ao-cu-test` and secret `ao-cu-test-secret`. Prints the endpoint URL. Stop it with tests/s3/stop.sh DIR.
#   usage: tests/s3/start.sh DIR [PORT]     (PORT defaults to 58014)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir=${1:?usage: tests/s3/start.sh DIR [PORT]}
port=${2:-58014}
bin="${S3S_FS:-$repo/tests/s3/.tools/bin/s3s-fs}"
if [ ! -x "$bin" ]; then
  echo "tests/s3/start.sh: $bin is missing (tests/setup.sh installs s3s-fs)" >&2
  exit 1
fi
mkdir -p "$dir/root/ao-cu-test"
dir=$(cd "$dir" && pwd)
nohup "$bin" --host 127.0.0.1 --port "$port" --access-key ao-cu-test --secret-key ao-cu-test-secret \
  "$dir/root" >"$dir/server.log" 2>&1 &
echo $! >"$dir/pid"
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
    echo "http://127.0.0.1:$port"
    exit 0
  fi
  sleep 0.1
done
echo "tests/s3/start.sh: s3s-fs did not listen on port $port; its log:" >&2
cat "$dir/server.log" >&2
exit 1

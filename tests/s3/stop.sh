#!/usr/bin/env bash
# Stops the server tests/s3/start.sh started in DIR.
set -euo pipefail
dir=${1:?usage: tests/s3/stop.sh DIR}
if [ -f "$dir/pid" ]; then
  kill "$(cat "$dir/pid")" 2>/dev/null || true
  rm -f "$dir/pid"
fi

#!/usr/bin/env bash
# Stops the server tests/pg/start.sh started in DIR (fast shutdown).
set -euo pipefail
dir=${1:?usage: tests/pg/stop.sh DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
else
  "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
fi

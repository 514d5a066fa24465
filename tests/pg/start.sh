#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server (Debian's postgresql package) for the tests and benchmarks, on
# loopback, with its data and socket under DIR; prints its URL. Stop it with tests/pg/stop.sh DIR.
#   usage: tests/pg/start.sh DIR [PORT]     (PORT defaults to 55432)
# The server keeps PostgreSQL's durable defaults (fsync, synchronous_commit on), so figures taken on it
# are honest. As root it runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail
dir=${1:?usage: tests/pg/start.sh DIR [PORT]}
port=${2:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "tests/pg/start.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi
as_server() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  as_server "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log"
fi
as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400" start >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres"

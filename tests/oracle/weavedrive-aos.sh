#!/usr/bin/env bash
# Local check (not in CI: it needs a real aos module, which is never committed): a real aos wasm64 process
# with WeaveDrive on `ao-cu serve`, and the same schedule through the reference loader with the real
# `@permaweb/weavedrive` reading ao-cu as its gateway, must give the same outputs.
#
#   tests/oracle/weavedrive-aos.sh <aos process.wasm> <WeaveDrive client main.lua> <ao-cu binary>
#
# Both files come from permaweb/aos (`extensions/weavedrive/process.wasm` and `client/main.lua`, e.g. with
# `git show HEAD:<path>` on a fetched copy). Three Evals: load the client, `getData` of an attested 82,000-byte
# item, `getTx` of it. Needs tests/e2e/node_modules (arbundles) and tests/oracle/node_modules (tests/setup.sh).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 <aos process.wasm> <client main.lua> <ao-cu binary>" >&2; exit 2; }
wasm="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; lua="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
aocu="$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work=$(mktemp -d /tmp/ao-cu-wd-aos.XXXXXX)
ln -s "$repo/tests/e2e/node_modules" "$work/node_modules"
cp "$repo/tests/oracle/weavedrive-aos/"*.mjs "$work/"
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$aocu" serve --data-dir "$work/a" --host 127.0.0.1 --port "$port" --workers 1 --no-pin-cores > "$work/a.log" 2>&1 &
pid_a=$!; trap 'kill $pid_a 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
url="http://127.0.0.1:$port"
node "$work/seed.mjs" "$url" "$wasm" "$lua" "$work" > /dev/null
node "$work/mklog.mjs" "$url" "$work" > "$work/log.jsonl"
node "$repo/tests/oracle/weavedrive.cjs" --module "$wasm" --format wasm64-unknown-emscripten-draft_2024_02_15 \
  --arweave "$url" < "$work/log.jsonl" > "$work/reference.jsonl"
process=$(node -e 'console.log(require(process.argv[1]).pid)' "$work/seed.json")
rc=0; i=0
for m in $(node -e 'console.log(require(process.argv[1]).msgs.join(" "))' "$work/seed.json"); do
  i=$((i + 1))
  ours=$(curl -s "$url/result/$m?process-id=$process" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.stringify(JSON.parse(s).Output)))')
  theirs=$(sed -n "$((i + 1))p" "$work/reference.jsonl" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.stringify(JSON.parse(s).Output)))')
  if [ "$ours" = "$theirs" ]; then echo "ok       Eval $i: $(cut -c1-120 <<<"$ours")"; else echo "MISMATCH Eval $i: ao-cu $ours / reference $theirs"; rc=1; fi
done
[ $rc = 0 ] && rm -rf "$work" || echo "logs in $work" >&2
exit $rc

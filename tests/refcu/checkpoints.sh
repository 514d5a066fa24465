#!/usr/bin/env bash
# Local check of Arweave checkpoints between the reference Node CU and ao-cu, both ways (not in CI; the
# reference CU is fetched as tests/refcu/README.md says, never committed):
#
#   tests/refcu/checkpoints.sh <servers/cu checkout, with node_modules> <ao-cu binary>
#
# 1. ao-cu A (all roles, uploads its own checkpoints every 5 results to itself) and the reference CU R
#    (GATEWAY_URL and UPLOADER_URL = A, eager checkpoints: EAGER_CHECKPOINT_ACCUMULATED_GAS_THRESHOLD=1).
#    A metered Lua process with 5 Count messages is seeded on A; R computes it and uploads a checkpoint
#    to A's bundler route; 2 more messages; a fresh ao-cu network CU B trusting only R's address
#    cold-starts from R's checkpoint: its results start after nonce 5, equal A's (GasUsed included), and
#    its memory equals A's.
# 2. A's own checkpoint; 1 more message; a fresh reference CU R2 trusting only A's address loads it (its
#    log says so) and computes the next result as A does.
# Exit 1 on any mismatch. Both sides get the reference worker's path as argv[0] (--this-program), so
# memories compare byte for byte. aoconnect's arbundles come from tests/e2e/node_modules (tests/setup.sh).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <servers/cu dir> <ao-cu binary>" >&2; exit 2; }
refcu="$(cd "$1" && pwd)"; aocu="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -d "$repo/tests/e2e/node_modules/@dha-team/arbundles" ] || { echo "run tests/setup.sh (tests/e2e/node_modules)" >&2; exit 2; }
work=$(mktemp -d /tmp/ao-cu-ckpt.XXXXXX); echo "work $work"
fail() { echo "MISMATCH: $*" >&2; echo "logs in $work" >&2; exit 1; }
port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
PA=$(port); PR=$(port); PB=$(port)
pids=(); trap 'kill ${pids[@]} 2>/dev/null || true' EXIT
wait_http() { for i in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no $1"; tail -30 "$2"; exit 1; }
DISABLE_PROCESS_CHECKPOINT_CREATION=false UPLOADER_URL=http://127.0.0.1:$PA PROCESS_CHECKPOINT_CREATION_THROTTLE=0 \
  AO_CU_CHECKPOINT_UPLOAD_EVERY=5 AO_CU_CHECKPOINT_UPLOAD_POLL=200 "$aocu" serve --data-dir "$work/a" --host 127.0.0.1 --port $PA --workers 1 --no-pin-cores --this-program "$refcu/src/effects/worker/evaluator/index.js" > "$work/a.log" 2>&1 & pids+=($!)
wait_http http://127.0.0.1:$PA/ "$work/a.log"
# start_refcu NAME PORT [VAR=VALUE ...]: a reference CU with its own wallet and caches under $work/NAME,
# A as its gateway, SU and uploader, extra settings as given; waits until it answers.
start_refcu() {
  local name=$1 port=$2; shift 2
  mkdir -p "$work/$name/"{wasm,mem,ckpt}
  node -e 'const {generateKeyPairSync}=require("crypto");const {privateKey}=generateKeyPairSync("rsa",{modulusLength:4096,publicExponent:65537});const j=privateKey.export({format:"jwk"});require("fs").writeFileSync(process.argv[1],JSON.stringify({kty:"RSA",e:j.e,n:j.n,d:j.d,p:j.p,q:j.q,dp:j.dp,dq:j.dq,qi:j.qi}))' "$work/$name/wallet.json"
  (cd "$refcu" && exec env NODE_CONFIG_ENV=development WALLET_FILE="$work/$name/wallet.json" PORT="$port" \
    GATEWAY_URL=http://127.0.0.1:$PA GRAPHQL_URLS=http://127.0.0.1:$PA/graphql UPLOADER_URL=http://127.0.0.1:$PA \
    DB_URL="$work/$name/ao-cache" WASM_BINARY_FILE_DIRECTORY="$work/$name/wasm" PROCESS_MEMORY_CACHE_FILE_DIR="$work/$name/mem" \
    PROCESS_MEMORY_FILE_CHECKPOINTS_DIR="$work/$name/ckpt" DEFAULT_LOG_LEVEL=debug "$@" \
    node --experimental-wasm-memory64 --import "$repo/tests/refcu/preload.mjs" src/app.js) > "$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/" "$work/$name.log"
}
start_refcu ref "$PR" DISABLE_PROCESS_CHECKPOINT_CREATION=false EAGER_CHECKPOINT_ACCUMULATED_GAS_THRESHOLD=1 \
  PROCESS_CHECKPOINT_CREATION_THROTTLE=0
REF_ADDR=$(curl -s http://127.0.0.1:$PR/ | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).address))')
echo "reference CU address $REF_ADDR"
cp "$repo/tests/refcu/seed.mjs" "$work/seed.mjs"; ln -s $repo/tests/e2e/node_modules "$work/node_modules"
node "$work/seed.mjs" http://127.0.0.1:$PA $repo/tests/modules/build/lua-process-metered.wasm 5 > "$work/seed.json" 2>"$work/seed.err" || { cat "$work/seed.err"; exit 1; }
PID=$(node -e 'console.log(require(process.argv[1]).pid)' "$work/seed.json")
LAST=$(node -e 'const s=require(process.argv[1]);console.log(s.messages[s.messages.length-1])' "$work/seed.json")
curl -s "http://127.0.0.1:$PR/result/$LAST?process-id=$PID" | grep -q '"Output":"5"' || fail "R's result of the 5th Count"
for i in $(seq 1 60); do
  n=$(curl -s -X POST -H 'content-type: application/json' http://127.0.0.1:$PA/graphql -d "{\"query\":\"{ transactions(owners: [\\\"$REF_ADDR\\\"], tags: [{name: \\\"Type\\\", values: [\\\"Checkpoint\\\"]}, {name: \\\"Process\\\", values: [\\\"$PID\\\"]}]) { edges { node { id tags { name value } } } } }\"}")
  echo "$n" | grep -q '"id"' && break; sleep 1
done
echo "$n" | grep -q '"id"' || fail "R uploaded no checkpoint to A"
echo "ok: the reference CU uploaded a checkpoint to A's bundler route"

node "$work/seed.mjs" http://127.0.0.1:$PA x 2 "$PID" > "$work/more.json"
LAST2=$(node -e 'const s=require(process.argv[1]);console.log(s.messages[s.messages.length-1])' "$work/more.json")
PROCESS_CHECKPOINT_TRUSTED_OWNERS=$REF_ADDR "$aocu" serve --data-dir "$work/b" --host 127.0.0.1 --port $PB --workers 1 --no-pin-cores \
  --roles cu --gateway http://127.0.0.1:$PA --this-program "$refcu/src/effects/worker/evaluator/index.js" > "$work/b.log" 2>&1 & pids+=($!)
wait_http http://127.0.0.1:$PB/ "$work/b.log"
ra=$(curl -s "http://127.0.0.1:$PA/result/$LAST2?process-id=$PID"); rb=$(curl -s "http://127.0.0.1:$PB/result/$LAST2?process-id=$PID")
[ "$ra" = "$rb" ] && echo "$ra" | grep -q '"Output":"7"' || fail "A: $ra / B: $rb"
n=$(curl -s "http://127.0.0.1:$PB/results/$PID?limit=100" | grep -o '"Output"' | wc -l)
[ "$n" = 2 ] || fail "B computed $n results, not the 2 after R's checkpoint"
curl -s http://127.0.0.1:$PB/metrics | grep -q '^ao_cu_arweave_checkpoints_adopted_total 1$' || fail "B adopted no checkpoint"
ha=$(curl -s "http://127.0.0.1:$PA/state/$PID" | sha256sum); hb=$(curl -s "http://127.0.0.1:$PB/state/$PID" | sha256sum)
[ "$ha" = "$hb" ] || fail "memory A $ha / B $hb"
echo "ok: ao-cu B cold-started from R's checkpoint: $rb, memory identical to A's"

# --- the other way: a fresh reference CU cold-starts from the checkpoint A uploaded
A_ADDR=$(curl -s http://127.0.0.1:$PA/ | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).address))')
for i in $(seq 1 100); do
  m=$(curl -s -X POST -H 'content-type: application/json' http://127.0.0.1:$PA/graphql -d "{\"query\":\"{ transactions(owners: [\\\"$A_ADDR\\\"], tags: [{name: \\\"Type\\\", values: [\\\"Checkpoint\\\"]}, {name: \\\"Process\\\", values: [\\\"$PID\\\"]}]) { edges { node { id tags { name value } } } } }\"}")
  echo "$m" | grep -q '"id"' && break; sleep 0.3
done
echo "$m" | grep -q '"id"' || fail "A uploaded no checkpoint"
node "$work/seed.mjs" http://127.0.0.1:$PA x 1 "$PID" > "$work/more2.json"
LAST3=$(node -e 'const s=require(process.argv[1]);console.log(s.messages[s.messages.length-1])' "$work/more2.json")
PR2=$(port)
start_refcu ref2 "$PR2" PROCESS_CHECKPOINT_TRUSTED_OWNERS="$A_ADDR"
ra=$(curl -s "http://127.0.0.1:$PA/result/$LAST3?process-id=$PID"); r2=$(curl -s "http://127.0.0.1:$PR2/result/$LAST3?process-id=$PID")
[ "$ra" = "$r2" ] && echo "$ra" | grep -q '"Output":"8"' || fail "A: $ra / R2: $r2"
grep -q 'ARWEAVE CHECKPOINT: Found Checkpoint' "$work/ref2.log" || fail "R2 did not load A's checkpoint (ref2.log)"
echo "ok: the reference CU cold-started from A's checkpoint: $r2"
rm -rf "$work"

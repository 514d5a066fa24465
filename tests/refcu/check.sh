#!/usr/bin/env bash
# Local compatibility check: the reference Node CU (permaweb/ao servers/cu), pointed at `ao-cu serve` as its
# SU, gateway (GraphQL) and Arweave, must compute the same results as ao-cu for the same messages.
#
#   tests/refcu/check.sh <servers/cu checkout, with node_modules> <ao-cu binary> [module.wasm]
#
# Starts ao-cu (all roles, temp store), a logging proxy in front of it (the reference CU reaches ao-cu only
# through it; every request it made is in proxy.jsonl), and the reference CU, on free loopback ports; sends
# messages through ao-cu's MU with aoconnect; compares each result (Output, Messages, Spawns, Assignments,
# Error; GasUsed where both give one), three dry-runs and the cron results; prints a diff; exit 1 on any
# mismatch. Not run in CI (the reference CU is not on a package registry): see README.md beside this file.
#
# Environment:
#   REFCU_MODULE        the Lua test module (default tests/modules/build/lua-process.wasm; tests/modules/build.sh)
#   REFCU_NODE_MODULES  a node_modules with @permaweb/aoconnect + @dha-team/arbundles (default tests/e2e/node_modules,
#                       else `npm ci` of tests/e2e's lockfile into ~/.cache/ao-cu-refcu)
#   REFCU_METERED_MODULE  the pre-metered build (default lua-process-metered.wasm beside the module; empty: none)
#   REFCU_PAGE_SIZE     the reference CU's SU page size (LOAD_MESSAGES_PAGE_SIZE, default 4: exercises cursor paging)
#   REFCU_STRICT        1: GasUsed values/presence and /state bytes must agree too (default: 1 when ao-cu serve
#                       has --this-program, which is then given the reference's worker script path)
#   REFCU_PATCHES       proxy patches to get past a known incompatibility (comma list, see proxy.mjs; default none)
#   REFCU_WORK          work folder (default a new temp folder; kept, and printed, on failure or REFCU_KEEP=1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
die() { echo "refcu: error: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: $0 <servers/cu dir> <ao-cu binary> [module.wasm]"
refcu="$(cd "$1" && pwd)" || die "no folder $1"
aocu="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
module="${3:-${REFCU_MODULE:-$repo/tests/modules/build/lua-process.wasm}}"
[ -f "$refcu/src/app.js" ] && [ -d "$refcu/node_modules" ] || die "$refcu is not a servers/cu checkout with node_modules (npm ci)"
[ -x "$aocu" ] || die "no ao-cu binary at $aocu"
[ -f "$module" ] || die "no module $module (build it: tests/modules/build.sh)"
# the pre-metered build beside it (GasUsed, out of gas); REFCU_METERED_MODULE= (empty) leaves it out
metered="${REFCU_METERED_MODULE-$(dirname "$module")/lua-process-metered.wasm}"
[ -z "$metered" ] || [ -f "$metered" ] || { echo "refcu: no $metered, the metered process is left out" >&2; metered=""; }
command -v node >/dev/null || die "node not found"

# aoconnect + arbundles for drive.mjs
nm="${REFCU_NODE_MODULES:-}"
if [ -z "$nm" ]; then
  if [ -d "$repo/tests/e2e/node_modules/@permaweb/aoconnect" ]; then
    nm="$repo/tests/e2e/node_modules"
  else
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/ao-cu-refcu/e2e"
    if ! cmp -s "$repo/tests/e2e/package-lock.json" "$cache/package-lock.json" 2>/dev/null || [ ! -d "$cache/node_modules" ]; then
      echo "refcu: npm ci of tests/e2e's packages into $cache" >&2
      mkdir -p "$cache"
      cp "$repo/tests/e2e/package.json" "$repo/tests/e2e/package-lock.json" "$cache/"
      npm ci --ignore-scripts --prefix "$cache" --no-audit --no-fund >/dev/null
    fi
    nm="$cache/node_modules"
  fi
fi
[ -d "$nm/@permaweb/aoconnect" ] || die "no @permaweb/aoconnect in $nm"

work="${REFCU_WORK:-$(mktemp -d /tmp/ao-cu-refcu.XXXXXX)}"
mkdir -p "$work"/{aocu,ref/wasm,ref/mem,ref/ckpt,drive}
cp "$here/drive.mjs" "$work/drive/drive.mjs"
ln -sfn "$nm" "$work/drive/node_modules"

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
P_AOCU="$(free_port)"; P_PROXY="$(free_port)"; P_REF="$(free_port)"
while [ "$P_PROXY" = "$P_AOCU" ]; do P_PROXY="$(free_port)"; done
while [ "$P_REF" = "$P_AOCU" ] || [ "$P_REF" = "$P_PROXY" ]; do P_REF="$(free_port)"; done

pids=()
status=1
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$status" = 0 ] && [ "${REFCU_KEEP:-0}" != 1 ] && [ -z "${REFCU_WORK:-}" ]; then rm -rf "$work"; else echo "refcu: logs in $work (aocu.log, proxy.jsonl, refcu.log, state.json)" >&2; fi
}
trap cleanup EXIT

wait_http() { # URL WHAT LOG
  for _ in $(seq 1 240); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.25
  done
  echo "refcu: $2 did not answer at $1; its log:" >&2; tail -n 40 "$3" >&2; exit 1
}

# The reference CU's evaluation worker script: Emscripten glue gives argv[0] and the `_` environment variable
# the script's path (process.argv[1]), so the reference's linear memory depends on where servers/cu lies.
# When this ao-cu can be told the same program name, memory (/state) is compared byte for byte.
worker_js="$refcu/src/effects/worker/evaluator/index.js"
aocu_extra=()
strict=0
if "$aocu" serve --help 2>/dev/null | grep -q -- '--this-program'; then
  aocu_extra+=(--this-program "$worker_js")
  strict=1
fi

echo "refcu: ao-cu $aocu on 127.0.0.1:$P_AOCU (proxy :$P_PROXY), reference CU $refcu on :$P_REF; work $work"
RUST_LOG="${RUST_LOG:-tower_http=debug,info}" "$aocu" serve --data-dir "$work/aocu" --host 127.0.0.1 --port "$P_AOCU" \
  --public-url "http://127.0.0.1:$P_PROXY" --workers 1 --no-pin-cores "${aocu_extra[@]}" > "$work/aocu.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$P_AOCU/" ao-cu "$work/aocu.log"

node "$here/proxy.mjs" "$P_PROXY" "http://127.0.0.1:$P_AOCU" "$work/proxy.jsonl" "${REFCU_PATCHES:-}" > "$work/proxy.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$P_PROXY/" proxy "$work/proxy.log"

node -e 'const {generateKeyPairSync}=require("crypto");const {privateKey}=generateKeyPairSync("rsa",{modulusLength:4096,publicExponent:65537});const j=privateKey.export({format:"jwk"});require("fs").writeFileSync(process.argv[1],JSON.stringify({kty:"RSA",e:j.e,n:j.n,d:j.d,p:j.p,q:j.q,dp:j.dp,dq:j.dq,qi:j.qi}))' "$work/ref/wallet.json"
(
  cd "$refcu"
  exec env NODE_CONFIG_ENV=development WALLET_FILE="$work/ref/wallet.json" PORT="$P_REF" \
    GATEWAY_URL="http://127.0.0.1:$P_PROXY" GRAPHQL_URLS="http://127.0.0.1:$P_PROXY/graphql" \
    UPLOADER_URL="http://127.0.0.1:$P_PROXY" DB_URL="$work/ref/ao-cache" LOG_CONFIG_PATH="$work/ref/.loglevel" \
    WASM_BINARY_FILE_DIRECTORY="$work/ref/wasm" PROCESS_MEMORY_CACHE_FILE_DIR="$work/ref/mem" \
    PROCESS_MEMORY_FILE_CHECKPOINTS_DIR="$work/ref/ckpt" RATE_LIMIT_MAX_REQUESTS=1000000 \
    WASM_EVALUATION_MAX_WORKERS="${REFCU_WORKERS:-2}" DEFAULT_LOG_LEVEL=debug LOAD_MESSAGES_PAGE_SIZE="${REFCU_PAGE_SIZE:-4}" \
    node --experimental-wasm-memory64 --import "$here/preload.mjs" src/app.js
) > "$work/refcu.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$P_REF/" "the reference CU" "$work/refcu.log"

node "$work/drive/drive.mjs" send "http://127.0.0.1:$P_AOCU" "$module" "$work/state.json" ${metered:+"$metered"}
rc=0
REFCU_STRICT="${REFCU_STRICT:-$strict}" node "$work/drive/drive.mjs" compare "http://127.0.0.1:$P_AOCU" "http://127.0.0.1:$P_REF" "$work/state.json" || rc=$?

# What the reference CU asked ao-cu for, and what failed.
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").filter(Boolean).map(JSON.parse);
const kinds = new Map(); const failed = []; const patched = new Map();
for (const e of lines) {
  if (e.patch) { patched.set(e.patch, (patched.get(e.patch) || 0) + 1); continue; }
  let k = `${e.method} ${e.path.split("?")[0].replace(/[A-Za-z0-9_-]{43}/g, "<id>")}`;
  const qs = e.path.includes("?") ? e.path.split("?")[1].split("&").map((p) => p.split("=")[0]).join("&") : "";
  if (qs) k += "?" + qs;
  if (e.path.startsWith("/graphql") && e.req) { const m = e.req.match(/query\s+(\w+)/); if (m) k += " " + m[1]; }
  k += ` -> ${e.status ?? e.error}`;
  kinds.set(k, (kinds.get(k) || 0) + 1);
  if (!(e.status >= 200 && e.status < 300)) failed.push(e);
}
console.log("\nrequests of the reference CU to ao-cu:");
for (const [k, n] of kinds) console.log(`  ${String(n).padStart(4)}  ${k}`);
for (const e of failed) console.log(`  FAILED ${e.method} ${e.path}: ${e.status ?? e.error} ${(e.res || "").slice(0, 300)}`);
console.log(`  (${lines.filter((e) => (e.res || "").includes("\"has_next_page\":true")).length} SU pages with has_next_page: true)`);
for (const [p, n] of patched) console.log(`  PATCHED by the proxy (incompatibility): ${p} x${n}`);
' "$work/proxy.jsonl"
if [ "$rc" != 0 ]; then
  echo "refcu: errors the reference CU answered with (refcu.log):" >&2
  grep -E 'bubbled to the top handler|Uncaught|Unhandled' "$work/refcu.log" | tail -n 10 >&2 || true
  echo "refcu: MISMATCH" >&2
  exit 1
fi
status=0
echo "refcu: the reference CU computed the same results as ao-cu"

// HTTP benchmarks of `ao-cu serve` (driven by bench/http/run.sh; not a test).
//
//   node bench.mjs ingest <url> <lua-process.wasm> <messages> <concurrency> <out-dir>
//
// Registers the Lua test module and spawns one process (Arweave-signed), pre-signs <messages> Count
// messages with an Ethereum key (client signing is not measured), then sends them with <concurrency> in
// flight. Per message it records the time from POST / (the signed item) to the 202 (scheduled) and to the
// moment GET /result answers (evaluated, result readable). Prints one JSON line of figures and writes
// <out-dir>/paths.txt (one /result path per message, for wrk) and <out-dir>/process.txt.
import { readFileSync, writeFileSync } from "node:fs";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tests/e2e/package.json", import.meta.url));
const { createData, ArweaveSigner, EthereumSigner } = require("@dha-team/arbundles");

const [, , command, url, wasmPath, nArg, cArg, outDir] = process.argv;
if (command !== "ingest") {
  console.error("usage: node bench.mjs ingest <url> <wasm> <messages> <concurrency> <out-dir>");
  process.exit(2);
}
const n = Number(nArg);
const concurrency = Number(cArg);

function jwk() {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 65537 });
  const k = privateKey.export({ format: "jwk" });
  return { kty: "RSA", e: k.e, n: k.n, d: k.d, p: k.p, q: k.q, dp: k.dp, dq: k.dq, qi: k.qi };
}

async function post(item) {
  const res = await fetch(`${url}/`, { method: "POST", body: item.getRaw() });
  const body = await res.json();
  if (res.status !== 202) throw new Error(`POST /: ${res.status} ${JSON.stringify(body)}`);
  return body.id;
}

const tag = (name, value) => ({ name, value });
const arweave = new ArweaveSigner(jwk());
const eth = new EthereumSigner(randomBytes(32).toString("hex"));

const moduleItem = createData(readFileSync(wasmPath), arweave, {
  tags: [
    tag("Data-Protocol", "ao"), tag("Variant", "ao.TN.1"), tag("Type", "Module"),
    tag("Module-Format", "wasm32-unknown-emscripten2"), tag("Input-Encoding", "JSON-1"),
    tag("Output-Encoding", "JSON-1"), tag("Memory-Limit", "1-gb"), tag("Compute-Limit", "9000000000000"),
  ],
});
await moduleItem.sign(arweave);
const moduleId = await post(moduleItem);
const { address } = await (await fetch(`${url}/`)).json();
const spawnItem = createData("bench", arweave, {
  tags: [
    tag("Data-Protocol", "ao"), tag("Variant", "ao.TN.1"), tag("Type", "Process"),
    tag("Module", moduleId), tag("Scheduler", address),
  ],
});
await spawnItem.sign(arweave);
const pid = await post(spawnItem);

const signStart = performance.now();
const items = [];
for (let i = 0; i < n; i++) {
  const item = createData(String(i), eth, {
    target: pid,
    tags: [tag("Data-Protocol", "ao"), tag("Variant", "ao.TN.1"), tag("Type", "Message"), tag("Action", "Count")],
  });
  await item.sign(eth);
  items.push(item);
}
const signMs = performance.now() - signStart;

const scheduled = new Array(n);
const readable = new Array(n);
const paths = new Array(n);
let next = 0;
const start = performance.now();
async function worker() {
  while (next < n) {
    const i = next++;
    const t0 = performance.now();
    const id = await post(items[i]);
    const t1 = performance.now();
    const path = `/result/${id}?process-id=${pid}`;
    const res = await fetch(`${url}${path}`);
    const body = await res.json();
    if (!res.ok || body.Error) throw new Error(`result ${i}: ${res.status} ${JSON.stringify(body)}`);
    const t2 = performance.now();
    scheduled[i] = t1 - t0;
    readable[i] = t2 - t0;
    paths[i] = path;
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
const totalS = (performance.now() - start) / 1000;

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2);
};
writeFileSync(`${outDir}/paths.txt`, paths.join("\n") + "\n");
writeFileSync(`${outDir}/process.txt`, pid + "\n");
console.log(JSON.stringify({
  messages: n,
  concurrency,
  client_sign_ms_per_item: +(signMs / n).toFixed(2),
  ingest_msgs_per_s: +(n / totalS).toFixed(1),
  scheduled_ms: { p50: pct(scheduled, 50), p99: pct(scheduled, 99) },
  result_readable_ms: { p50: pct(readable, 50), p99: pct(readable, 99) },
}));

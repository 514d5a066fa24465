// seed.mjs AOCU_URL METERED_WASM N  -> prints JSON {pid, messages:[ids]}
import { readFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import * as arbundlesNs from "@dha-team/arbundles";
const arbundles = arbundlesNs.default ?? arbundlesNs;
const { createData, ArweaveSigner } = arbundles;
const [, , aocu, wasm, n, existing] = process.argv;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 65537 });
const j = privateKey.export({ format: "jwk" });
const signer = new ArweaveSigner({ kty: "RSA", e: j.e, n: j.n, d: j.d, p: j.p, q: j.q, dp: j.dp, dq: j.dq, qi: j.qi });
const T = (o) => Object.entries(o).map(([name, value]) => ({ name, value }));
const post = async (data, tags, target) => {
  const it = createData(data, signer, { tags, target });
  await it.sign(signer);
  const r = await fetch(`${aocu}/`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: it.getRaw() });
  if (!r.ok) throw new Error(`MU: ${r.status} ${await r.text()}`);
  return it.id;
};
const scheduler = (await (await fetch(`${aocu}/`)).json()).address;
if (existing) {
  const messages = [];
  for (let i = 0; i < Number(n); i++) messages.push(await post("", T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Message", Action: "Count" }), existing));
  console.log(JSON.stringify({ pid: existing, messages }));
  process.exit(0);
}
const mod = await post(readFileSync(wasm), T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Module", "Module-Format": "wasm32-unknown-emscripten2",
  "Input-Encoding": "JSON-1", "Output-Encoding": "JSON-1", "Memory-Limit": "1-gb", "Compute-Limit": "9000000000000" }));
const pid = await post("ckpt", T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Process", Module: mod, Scheduler: scheduler }));
const messages = [];
for (let i = 0; i < Number(n); i++) messages.push(await post("", T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Message", Action: "Count" }), pid));
console.log(JSON.stringify({ module: mod, pid, messages }));

import { readFileSync, writeFileSync } from "node:fs";
import { createHash, generateKeyPairSync } from "node:crypto";
import * as arbundlesNs from "@dha-team/arbundles";
const arbundles = arbundlesNs.default ?? arbundlesNs;
const { createData, ArweaveSigner } = arbundles;
// seed.mjs AOCU_URL AOS_WASM CLIENT_LUA OUT_DIR: a WeaveDrive aos process on ao-cu (see ../weavedrive-aos.sh)
const [, , aocu, wasm, clientLua, out] = process.argv;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 65537 });
const j = privateKey.export({ format: "jwk" });
const signer = new ArweaveSigner({ kty: "RSA", e: j.e, n: j.n, d: j.d, p: j.p, q: j.q, dp: j.dp, dq: j.dq, qi: j.qi });
const T = (o) => Object.entries(o).map(([name, value]) => ({ name, value }));
const mk = async (data, tags, target, anchor) => { const it = createData(data, signer, { tags, target, anchor }); await it.sign(signer); return it; };
const post = async (path, it) => {
  const r = await fetch(`${aocu}${path}`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: it.getRaw() });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return it.id;
};
const root = await (await fetch(`${aocu}/`)).json();
const modTags = T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Module", "Module-Format": "wasm64-unknown-emscripten-draft_2024_02_15",
  "Input-Encoding": "JSON-1", "Output-Encoding": "JSON-1", "Memory-Limit": "1-gb", "Compute-Limit": "9000000000000" });
const mod = await post("/", await mk(readFileSync(wasm), modTags));
const payload = "WeaveDrive on a real aos wasm64 process. ".repeat(2000);
const data = await mk(payload, T({ "Content-Type": "text/plain" }));
await post("/tx", data);
const owner = createHash("sha256").update(Buffer.from(j.n, "base64url")).digest("base64url");
await post("/tx", await mk("", T({ "Data-Protocol": "ao", Type: "Attestation", Message: data.id })));
const spawnTags = T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Process", Module: mod, Scheduler: root.address, Extension: "WeaveDrive", Attestor: owner });
const spawn = await mk("", spawnTags, undefined, Buffer.alloc(32, 5).toString("base64url").slice(0, 32));
const pid = await post("/", spawn);
const evalTags = T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Message", Action: "Eval" });
const load = `local function _load()\n${readFileSync(clientLua, "utf8")}\nend\n_G.package.loaded['WeaveDrive'] = _load()\nreturn "ok"`;
const m1 = await post("/", await mk(load, evalTags, pid));
const m2 = await post("/", await mk(`local d = require('WeaveDrive').getData('${data.id}'); return #d .. ' ' .. d:sub(1, 42)`, evalTags, pid));
const m3 = await post("/", await mk(`local h = require('WeaveDrive').getTx('${data.id}'); return h.ownerAddress .. ' ' .. h.data_size`, evalTags, pid));
writeFileSync(`${out}/seed.json`, JSON.stringify({ mod, pid, data: data.id, owner, msgs: [m1, m2, m3], modTags, spawnTags, payloadLen: payload.length }));
console.log(JSON.stringify({ pid, msgs: [m1, m2, m3], data: data.id, owner }));

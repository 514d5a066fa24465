import { readFileSync } from "node:fs";
// mklog.mjs AOCU_URL OUT_DIR: the process's schedule on ao-cu as msg/env lines for weavedrive.cjs
const [, , aocu, out] = process.argv;
const s = JSON.parse(readFileSync(`${out}/seed.json`, "utf8"));
const page = await (await fetch(`${aocu}/${s.pid}?limit=100`)).json();
const env = { Process: { Id: s.pid, Owner: s.owner, Tags: s.spawnTags }, Module: { Id: s.mod, Owner: s.owner, Tags: s.modTags } };
for (const e of page.edges) {
  const m = e.node.message, a = e.node.assignment;
  const at = (n) => (a.tags.find((t) => t.name === n) || {}).value;
  const msg = { Id: m.id, Signature: m.signature, Data: m.data, Owner: s.owner, Target: s.pid, Anchor: m.anchor ?? null, From: s.owner,
    Tags: m.tags, Epoch: Number(at("Epoch")), Nonce: Number(at("Nonce")), Timestamp: Number(at("Timestamp")),
    "Block-Height": Number(at("Block-Height")), "Hash-Chain": at("Hash-Chain"), Cron: false, "Read-Only": false };
  if (Number(at("Nonce")) === 0) msg.Module = s.mod;
  console.log(JSON.stringify({ msg, env }));
}

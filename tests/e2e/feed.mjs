// Feeds one process through an ao-cu node's MU with the real AO client, @permaweb/aoconnect (legacy
// mode). Run by crates/ao-cu/tests/quic.rs:
//
//   node feed.mjs spawn <node-url> <lua-process.wasm> <out.json>
//       registers the Lua test module and spawns a process from it; writes {process, wallet}.
//
// <node-url> is the MU; the gateway (GraphQL, module upload) and the scheduler are the node at
// $FEED_GATEWAY_URL when set (an MU that forwards to another node's SU), else <node-url> too.
//   node feed.mjs send <node-url> <out.json> <count>
//       sends <count> Count messages to the process in <out.json> (signed with its wallet), appending
//       each message id to `messages` there as soon as the MU acknowledged it.
//
// Exit status 0 = every message was acknowledged.
import { readFileSync, writeFileSync } from "node:fs";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import { moduleItem, testWallet } from "./common.mjs";
const [, , command, baseUrl, arg1, arg2] = process.argv;


const gatewayUrl = process.env.FEED_GATEWAY_URL || baseUrl;
const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: gatewayUrl, GATEWAY_URL: gatewayUrl });

if (command === "spawn") {
  const jwk = testWallet();
  const root = await (await fetch(`${gatewayUrl}/`)).json();
  const wasm = readFileSync(arg1);
  const item = await moduleItem(jwk, wasm);
  const res = await fetch(`${gatewayUrl}/`, { method: "POST", body: item.getRaw() });
  if (!res.ok) throw new Error(`module upload: ${res.status} ${await res.text()}`);
  const signer = createDataItemSigner(jwk);
  const pid = await ao.spawn({ module: item.id, scheduler: root.address, signer, tags: [{ name: "Name", value: "quic" }] });
  writeFileSync(arg2, JSON.stringify({ process: pid, wallet: jwk, messages: [] }));
  console.log("[feed] spawned", pid);
} else if (command === "send") {
  const state = JSON.parse(readFileSync(arg1, "utf8"));
  const signer = createDataItemSigner(state.wallet);
  const count = Number(arg2);
  for (let i = 0; i < count; i++) {
    const id = await ao.message({ process: state.process, signer, tags: [{ name: "Action", value: "Count" }] });
    state.messages.push(id);
    writeFileSync(arg1, JSON.stringify(state));
  }
  console.log("[feed] sent", count, "to", state.process);
} else {
  console.error("usage: node feed.mjs spawn <url> <wasm> <out> | send <url> <out> <count>");
  process.exit(2);
}

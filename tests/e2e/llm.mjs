// A language model as an AO process, end to end through `ao-cu serve` with @permaweb/aoconnect (legacy
// mode). Run by crates/ao-cu/tests/llm.rs:
//
//   node llm.mjs <node-url> <llm-generate.wasm> <model.gguf> <out.json>
//
// Uploads the GGUF as a signed data item (POST /tx, the node's bundler route), registers the test module
// tests/modules/llm/generate.c as a Type=Module item, spawns a process, sends Generate (the model named
// by the uploaded item's id) and Continue messages, dry-runs the same Generate, sends a Generate naming a
// model that does not exist and one more Continue after it; writes every Output/Error it saw to
// <out.json> for the Rust side, which checks the tokens against cu-llm's own greedy continuation.
// Exit status 0 = every assertion here held.
import { readFileSync, writeFileSync } from "node:fs";
import { strict as assert } from "node:assert";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import { createData, ArweaveSigner, moduleItem as signedModule, testWallet } from "./common.mjs";

const [, , baseUrl, wasmPath, ggufPath, outPath] = process.argv;
if (!outPath) {
  console.error("usage: node llm.mjs <url> <llm-generate.wasm> <model.gguf> <out.json>");
  process.exit(2);
}
const log = (...args) => console.log("[llm]", ...args);

async function post(path, item) {
  const res = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream", Accept: "application/json" },
    body: item.getRaw(),
  });
  const body = await res.json();
  assert.ok(res.ok, `POST ${path}: ${res.status} ${JSON.stringify(body)}`);
  assert.equal(body.id, item.id, `POST ${path} answers the item's id`);
  return item.id;
}

const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: baseUrl, GATEWAY_URL: baseUrl });
const jwk = testWallet();
const signer = createDataItemSigner(jwk);
const scheduler = (await (await fetch(`${baseUrl}/`)).json()).address;

// 1. The model: its GGUF as the data of a signed data item, uploaded to the node.
const modelItem = createData(readFileSync(ggufPath), new ArweaveSigner(jwk), {
  tags: [
    { name: "Content-Type", value: "application/octet-stream" },
    { name: "Name", value: "SmolLM2-135M-Instruct.Q4_1.gguf" },
  ],
});
await modelItem.sign(new ArweaveSigner(jwk));
const modelId = await post("/tx", modelItem);
log("model", modelId);

// 2. The module and a process.
const moduleItem = await signedModule(jwk, readFileSync(wasmPath), [{ name: "Content-Type", value: "application/wasm" }]);
const moduleId = await post("/", moduleItem);
const pid = await ao.spawn({ module: moduleId, scheduler, signer, tags: [{ name: "Name", value: "llm" }] });
log("process", pid);

const PROMPT = "Write a short story about a robot who learns to paint.";
const generateTags = (model, max) => [
  { name: "Action", value: "Generate" },
  { name: "Model", value: model },
  { name: "Max-Tokens", value: String(max) },
];
const send = async (tags, data = "") => {
  const id = await ao.message({ process: pid, signer, tags, data });
  return ao.result({ message: id, process: pid });
};

// 3. Generate, Continue, a dry-run of the same Generate, a bad model, and Continue again.
const generate = await send(generateTags(modelId, 6), PROMPT);
assert.equal(generate.Error, undefined, `Generate: ${JSON.stringify(generate.Error)}`);
assert.equal(generate.Output.tokens.length, 6);
log("generate", JSON.stringify(generate.Output.data));
const cont = await send([{ name: "Action", value: "Continue" }, { name: "Max-Tokens", value: "4" }]);
assert.equal(cont.Error, undefined, `Continue: ${JSON.stringify(cont.Error)}`);
const dry = await ao.dryrun({ process: pid, tags: generateTags(modelId, 6), data: PROMPT });
assert.deepEqual(dry.Output, generate.Output, "a dry-run of the same Generate answers the same");
const unknown = await send(generateTags("no-such-model-item", 6), PROMPT);
assert.equal(typeof unknown.Error, "string", "an unknown model id is the message's Error");
assert.match(unknown.Error, /no data item no-such-model-item holds a model/);
const after = await send([{ name: "Action", value: "Continue" }, { name: "Max-Tokens", value: "4" }]);
assert.equal(after.Error, undefined, "the process goes on after the bad message");

writeFileSync(
  outPath,
  JSON.stringify({ generate: generate.Output, continue: cont.Output, after: after.Output, unknown: unknown.Error, gas: generate.GasUsed }),
);
log("done");

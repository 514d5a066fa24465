// Differential-test oracle for cu-ans104 (run by crates/cu-ans104/tests/oracle_diff.rs).
//
//   node oracle.mjs sign <outdir>       sign data items with the real client libraries, write <name>.bin
//                                       plus <name>.json (what arbundles reads back from it)
//   node oracle.mjs verify <file>...    parse and verify data items (ours), one JSON line per file
//
// "sign" produces items exactly as clients do:
//   * ao-*   : @permaweb/aoconnect `message()` with `createDataItemSigner(jwk)`; the body aoconnect POSTs to the
//              MU is captured by a fetch stub (no network).
//   * arw-*  : @dha-team/arbundles `createData` + `ArweaveSigner` (arweave-js crypto driver).
//   * eth-*  : @dha-team/arbundles `createData` + `EthereumSigner` (ethers `signMessage`, EIP-191).
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import * as arbundlesNs from "@dha-team/arbundles";
import { computeAddress } from "@ethersproject/transactions";

const arbundles = arbundlesNs.default ?? arbundlesNs;
const { createData, DataItem, ArweaveSigner, EthereumSigner } = arbundles;
const here = dirname(fileURLToPath(import.meta.url));
const jwk = JSON.parse(readFileSync(join(here, "test-jwk.json"), "utf8"));
// A fixed, test-only secp256k1 key.
const ETH_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const PROCESS = "6bV9Uh0Bq2N7Z1f7dUP9hKxYQ0KkR3rCq5m3S1lM1xE"; // 32 bytes, base64url

function b64url(buf) {
  return Buffer.from(buf).toString("base64url");
}

async function describe(bytes) {
  const item = new DataItem(Buffer.from(bytes));
  let valid = false;
  let error = null;
  try {
    valid = await DataItem.verify(Buffer.from(bytes));
  } catch (e) {
    error = String(e && e.message ? e.message : e);
  }
  if (error !== null) return { valid, error };
  const owner = item.rawOwner;
  const address =
    owner.length === 65 ? computeAddress(owner) : b64url(createHash("sha256").update(owner).digest());
  const rawAnchor = item.rawAnchor;
  return {
    valid,
    id: item.id,
    signatureType: item.signatureType,
    owner: item.owner,
    address,
    target: item.rawTarget.length ? item.target : null,
    anchor: rawAnchor.length ? rawAnchor.toString() : null,
    tags: item.tags.map((t) => [t.name, t.value]),
    data: b64url(item.rawData),
    signatureDeepHash: b64url(await item.getSignatureData()),
  };
}

async function aoMessage(args) {
  let body = null;
  const fetch = async (_url, opts) => {
    body = Buffer.from(opts.body);
    return new Response(JSON.stringify({ id: "captured" }), {
      status: 200,
      headers: { "Content-Type": "application/json" },
    });
  };
  const ao = connect({ MODE: "legacy", MU_URL: "http://mu.invalid", fetch, noLog: true });
  await ao.message({ ...args, signer: createDataItemSigner(jwk) });
  if (body === null) throw new Error("aoconnect did not POST a body");
  return body;
}

async function arbundlesItem(signer, data, opts) {
  const item = createData(data, signer, opts);
  await item.sign(signer);
  return item.getRaw();
}

async function sign(outdir) {
  mkdirSync(outdir, { recursive: true });
  const cases = [];
  cases.push([
    "ao-eval",
    await aoMessage({
      process: PROCESS,
      tags: [{ name: "Action", value: "Eval" }],
      data: "Send({ Target = ao.id, Data = 'héllo ✓' })",
    }),
  ]);
  cases.push([
    "ao-anchor",
    await aoMessage({
      process: PROCESS,
      anchor: "00000000000000000000000000000042",
      tags: [
        { name: "Action", value: "Transfer" },
        { name: "Recipient", value: "x".repeat(43) },
        { name: "Quantity", value: "1000000000000" },
        { name: "Empty", value: "" },
        { name: "Ünïcödé-名前", value: "値 🚀" },
      ],
      data: "",
    }),
  ]);
  // Many tags: long values force the multi-byte varints.
  const many = [];
  for (let i = 0; i < 20; i++) many.push({ name: `Tag-${i}`, value: "v".repeat(i * 9) });
  cases.push(["ao-many-tags", await aoMessage({ process: PROCESS, tags: many, data: "1234" })]);

  const arw = new ArweaveSigner(jwk);
  cases.push([
    "arw-plain",
    await arbundlesItem(arw, Buffer.from([0, 1, 2, 3, 255, 254]), {
      tags: [{ name: "Content-Type", value: "application/octet-stream" }],
    }),
  ]);
  cases.push(["arw-notags", await arbundlesItem(arw, "no tags, no target, no anchor", {})]);

  const eth = new EthereumSigner(ETH_KEY);
  cases.push([
    "eth-message",
    await arbundlesItem(eth, "hello from ethereum", {
      target: PROCESS,
      anchor: "abcdefghijklmnopqrstuvwxyz012345",
      tags: [
        { name: "Data-Protocol", value: "ao" },
        { name: "Action", value: "Ping" },
      ],
    }),
  ]);
  cases.push(["eth-empty", await arbundlesItem(eth, "", {})]);

  for (const [name, bytes] of cases) {
    writeFileSync(join(outdir, `${name}.bin`), bytes);
    writeFileSync(join(outdir, `${name}.json`), JSON.stringify(await describe(bytes)) + "\n");
  }
  console.log(cases.map(([n]) => n).join("\n"));
}

async function verify(files) {
  for (const f of files) console.log(JSON.stringify(await describe(readFileSync(f))));
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === "sign" && rest.length === 1) await sign(rest[0]);
else if (cmd === "verify" && rest.length > 0) await verify(rest);
else {
  console.error("usage: node oracle.mjs sign <outdir> | verify <file>...");
  process.exit(2);
}

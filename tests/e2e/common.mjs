// What the end-to-end scripts share (aoconnect.mjs, feed.mjs, llm.mjs): a throwaway test wallet and the
// signed Type=Module data item that registers a test module with an ao-cu node.
import { generateKeyPairSync } from "node:crypto";
import * as arbundlesNs from "@dha-team/arbundles";

const arbundles = arbundlesNs.default ?? arbundlesNs;
export const { createData, ArweaveSigner } = arbundles;

/** A fresh RSA-4096 Arweave JWK (test-only, never stored). */
export function testWallet() {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 65537 });
  const jwk = privateKey.export({ format: "jwk" });
  return { kty: "RSA", e: jwk.e, n: jwk.n, d: jwk.d, p: jwk.p, q: jwk.q, dp: jwk.dp, dq: jwk.dq, qi: jwk.qi };
}

/** The signed Type=Module item of `wasm` (format wasm32-unknown-emscripten2, JSON-1, 1-gb, 9e12 gas),
 * with `extraTags` after the standard ones. */
export async function moduleItem(jwk, wasm, extraTags = []) {
  const item = createData(wasm, new ArweaveSigner(jwk), {
    tags: [
      { name: "Data-Protocol", value: "ao" },
      { name: "Variant", value: "ao.TN.1" },
      { name: "Type", value: "Module" },
      { name: "Module-Format", value: "wasm32-unknown-emscripten2" },
      { name: "Input-Encoding", value: "JSON-1" },
      { name: "Output-Encoding", value: "JSON-1" },
      { name: "Memory-Limit", value: "1-gb" },
      { name: "Compute-Limit", value: "9000000000000" },
      ...extraTags,
    ],
  });
  await item.sign(new ArweaveSigner(jwk));
  return item;
}

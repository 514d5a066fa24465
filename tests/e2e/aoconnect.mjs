// End-to-end test of `ao-cu serve` with the real AO client, @permaweb/aoconnect (legacy mode), pointed at
// one ao-cu node as its MU, CU and gateway (GraphQL). Run by crates/ao-cu/tests/serve.rs:
//
//   node aoconnect.mjs run <node-url> <lua-process.wasm> <state-out.json>
//       registers the Lua test module (a signed Type=Module data item), spawns processes from it, sends
//       messages, reads result/results (paging)/dryrun, lets two processes message each other through the
//       outbox, and `assign`s one process's message to the other; asserts every output; writes what it saw to
//       <state-out.json>.
//   node aoconnect.mjs verify <node-url> <state.json>
//       after a restart of the node: every recorded result must read back identical.
//
// Exit status 0 = every assertion held. The wallet is generated per run (test-only, never stored).
import { readFileSync, writeFileSync } from "node:fs";
import { strict as assert } from "node:assert";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import { moduleItem as signedModule, testWallet } from "./common.mjs";

const [, , command, baseUrl, arg1, arg2] = process.argv;
if (!command || !baseUrl) {
  console.error("usage: node aoconnect.mjs run <url> <wasm> <state-out> | verify <url> <state>");
  process.exit(2);
}

const log = (...args) => console.log("[e2e]", ...args);

/** The text of an Output as aos clients read it: a string, or `data` of an object Output. */
function outputText(output) {
  if (typeof output === "string") return output;
  if (typeof output === "number") return String(output);
  if (output && typeof output === "object" && "data" in output) return String(output.data);
  return JSON.stringify(output);
}

async function getJson(path) {
  const res = await fetch(`${baseUrl}${path}`);
  const body = await res.json();
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `f` until it returns a truthy value (outbox delivery is asynchronous). */
async function eventually(what, f, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

async function run(wasmPath, stateOut) {
  const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: baseUrl, GATEWAY_URL: baseUrl });
  const jwk = testWallet();
  const signer = createDataItemSigner(jwk);
  const recorded = [];

  const root = await getJson("/");
  assert.equal(typeof root.address, "string", "GET / has the node address");
  assert.equal(typeof root.timestamp, "number", "GET / has a timestamp");
  const scheduler = root.address;
  log("node", scheduler);

  // 1. Register the module: a Type=Module data item signed with arbundles, data = the wasm.
  const wasm = readFileSync(wasmPath);
  const moduleItem = await signedModule(jwk, wasm, [{ name: "Content-Type", value: "application/wasm" }]);
  const moduleRes = await fetch(`${baseUrl}/`, {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream", Accept: "application/json" },
    body: moduleItem.getRaw(),
  });
  const moduleBody = await moduleRes.json();
  assert.ok(moduleRes.ok, `module upload: ${moduleRes.status} ${JSON.stringify(moduleBody)}`);
  const moduleId = moduleItem.id;
  assert.equal(moduleBody.id, moduleId, "the MU answers the module item's id");
  log("module", moduleId);

  // A tampered item is refused (400) and nothing is stored.
  const tampered = Buffer.from(moduleItem.getRaw());
  tampered[tampered.length - 1] ^= 0xff;
  const bad = await fetch(`${baseUrl}/`, { method: "POST", body: tampered });
  assert.equal(bad.status, 400, "a tampered data item is a 400");
  assert.equal(typeof (await bad.json()).error, "string");

  // 2. Spawn two processes from it (spawn checks the module and the scheduler through GraphQL).
  const spawn = (name) =>
    ao.spawn({ module: moduleId, scheduler, signer, tags: [{ name: "Name", value: name }], data: name });
  const pidA = await spawn("A");
  const pidB = await spawn("B");
  assert.match(pidA, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(pidA, pidB);
  log("processes", pidA, pidB);

  // 3. message + result.
  const send = (pid, action, data = "", extra = []) =>
    ao.message({ process: pid, signer, tags: [{ name: "Action", value: action }, ...extra], data });
  const echoId = await send(pidA, "Echo", "hello from aoconnect");
  const echo = await ao.result({ message: echoId, process: pidA });
  assert.equal(echo.Error, undefined, `Echo has no error: ${JSON.stringify(echo)}`);
  assert.equal(outputText(echo.Output), "hello from aoconnect");
  assert.deepEqual(echo.Messages, []);
  assert.deepEqual(echo.Spawns, []);
  assert.deepEqual(echo.Assignments, []);
  recorded.push({ process: pidA, message: echoId, result: echo });

  // Counts accumulate in the process's state, message after message.
  const counts = [];
  for (let i = 1; i <= 5; i++) {
    const id = await send(pidA, "Count");
    const r = await ao.result({ message: id, process: pidA });
    assert.equal(outputText(r.Output), String(i), `Count #${i}: ${JSON.stringify(r)}`);
    counts.push(id);
    recorded.push({ process: pidA, message: id, result: r });
  }
  // An error result: Error set, outputs empty (and excluded from /results).
  const errId = await send(pidA, "Error");
  const err = await ao.result({ message: errId, process: pidA });
  assert.ok(err.Error, `Error handler gives an Error: ${JSON.stringify(err)}`);
  recorded.push({ process: pidA, message: errId, result: err });

  // 4. results with paging: ASC pages of 2 give every non-error result in schedule order. aoconnect's
  //    schema keeps only `edges` (it drops `pageInfo`), so a short page ends the walk; `pageInfo` is checked
  //    on the CU route itself below.
  const seen = [];
  let from;
  let pages = 0;
  for (;;) {
    const page = await ao.results({ process: pidA, from, sort: "ASC", limit: 2 });
    assert.ok(Array.isArray(page.edges), `results page: ${JSON.stringify(page)}`);
    assert.ok(page.edges.length <= 2);
    for (const e of page.edges) {
      assert.equal(typeof e.cursor, "string");
      seen.push(outputText(e.node.Output));
    }
    pages++;
    if (page.edges.length < 2) break;
    from = page.edges[page.edges.length - 1].cursor;
    assert.ok(pages < 20, "paging terminates");
  }
  // The spawn message itself (nonce 0) is evaluated first; then Echo, Count 1..5 (the Error is filtered out).
  assert.equal(seen.length, 7, `results: ${JSON.stringify(seen)}`);
  assert.deepEqual(seen.slice(1), ["hello from aoconnect", "1", "2", "3", "4", "5"], `results: ${JSON.stringify(seen)}`);
  assert.equal(pages, 4, "limit 2 splits 7 results over 4 pages");
  const desc = await ao.results({ process: pidA, sort: "DESC", limit: 1 });
  assert.equal(desc.edges.length, 1);
  assert.equal(outputText(desc.edges[0].node.Output), "5", "DESC starts with the latest");
  const raw = await getJson(`/results/${pidA}?sort=DESC&limit=1`);
  assert.equal(raw.pageInfo.hasNextPage, true, `pageInfo: ${JSON.stringify(raw)}`);
  assert.deepEqual(raw.edges[0].node.Assignments, []);
  const rawLast = await getJson(`/results/${pidA}?sort=ASC&from=${encodeURIComponent(raw.edges[0].cursor)}`);
  assert.equal(rawLast.pageInfo.hasNextPage, false);

  // 5. dryrun: reads the latest state, changes nothing.
  const info = await ao.dryrun({ process: pidA, tags: [{ name: "Action", value: "Info" }] });
  assert.equal(info.Error, undefined, `dryrun Info: ${JSON.stringify(info)}`);
  const state = typeof info.Output === "object" ? info.Output : JSON.parse(info.Output);
  assert.equal(state.readonly, true, "a dry-run message is Read-Only");
  assert.equal(state.id, pidA);
  const countBefore = state.count;
  const dry1 = await ao.dryrun({ process: pidA, tags: [{ name: "Action", value: "Count" }] });
  const dry2 = await ao.dryrun({ process: pidA, tags: [{ name: "Action", value: "Count" }], data: "x" });
  assert.equal(outputText(dry1.Output), String(countBefore + 1));
  assert.equal(outputText(dry2.Output), String(countBefore + 1), "dry-runs are not persisted");
  const after = await send(pidA, "Count");
  const afterRes = await ao.result({ message: after, process: pidA });
  assert.equal(outputText(afterRes.Output), String(countBefore + 1));
  recorded.push({ process: pidA, message: after, result: afterRes });

  // 6. Two processes messaging each other through the outbox: A sends to B (Action Send), B's Send replies
  //    to its From (A) with Action Reply, which A has no handler for.
  const pingId = await send(pidA, "Send", "ping", [
    { name: "Recipient", value: pidB },
    { name: "Reply-Action", value: "Send" },
  ]);
  const ping = await ao.result({ message: pingId, process: pidA });
  assert.equal(ping.Messages.length, 1, `A's outbox: ${JSON.stringify(ping)}`);
  assert.equal(ping.Messages[0].Target, pidB);
  assert.equal(ping.Messages[0].Data, "ping");
  recorded.push({ process: pidA, message: pingId, result: ping });

  const inB = await eventually("B to get A's message", async () => {
    const page = await ao.results({ process: pidB, sort: "ASC", limit: 100 });
    return page.edges.find((e) => outputText(e.node.Output).startsWith("sent "));
  });
  assert.equal(inB.node.Messages.length, 1);
  assert.equal(inB.node.Messages[0].Target, pidA, "B replies to its From, process A");
  assert.equal(inB.node.Messages[0].Data, "ping");

  await eventually("A to get B's reply", async () => {
    const page = await ao.results({ process: pidA, sort: "DESC", limit: 5 });
    return page.edges.find((e) => outputText(e.node.Output) === "no handler for action Reply");
  });
  // A saw B's reply as a message from B, forwarded by the node.
  const seenByA = await ao.dryrun({ process: pidA, tags: [{ name: "Action", value: "Info" }] });
  const aState = typeof seenByA.Output === "object" ? seenByA.Output : JSON.parse(seenByA.Output);
  assert.ok(aState.seen >= 11, `A handled the reply too: ${JSON.stringify(aState)}`);

  // 6b. assign: aoconnect's `assign` posts `/?process-id=&assign=` to the MU and returns the assignment id;
  //     B's schedule gets A's Echo message as an assignment (`message: null`) and B evaluates it.
  const assignmentId = await ao.assign({ process: pidB, message: echoId });
  assert.match(assignmentId, /^[A-Za-z0-9_-]{43}$/, `assignment id: ${assignmentId}`);
  const suNode = await getJson(`/${echoId}?process-id=${pidB}`);
  assert.equal(suNode.message, null, `an assignment has no message: ${JSON.stringify(suNode)}`);
  assert.equal(suNode.assignment.id, assignmentId);
  assert.ok(suNode.assignment.tags.some((t) => t.name === "Message" && t.value === echoId));
  const assigned = await ao.result({ message: echoId, process: pidB });
  assert.equal(outputText(assigned.Output), "hello from aoconnect", `B's result: ${JSON.stringify(assigned)}`);
  recorded.push({ process: pidB, message: echoId, result: assigned });
  await assert.rejects(ao.assign({ process: pidB, message: echoId }), /400/, "assigning twice is a 400");
  await assert.rejects(ao.assign({ process: "x".repeat(43), message: echoId }), /404/, "unknown process is a 404");

  // 7. CU error shapes through the same URL.
  const missing = await fetch(`${baseUrl}/result/${echoId}`);
  assert.equal(missing.status, 400);
  const unknown = await fetch(`${baseUrl}/results/${"x".repeat(43)}`);
  assert.equal(unknown.status, 404);

  writeFileSync(stateOut, JSON.stringify({ pidA, pidB, recorded }, null, 1));
  log(`ok: ${recorded.length} results recorded, ${seen.length} results paged in ${pages} pages`);
}

async function verify(statePath) {
  const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: baseUrl, GATEWAY_URL: baseUrl });
  const { recorded, pidA } = JSON.parse(readFileSync(statePath, "utf8"));
  for (const { process: pid, message, result } of recorded) {
    const again = await ao.result({ message, process: pid });
    assert.deepEqual(again, result, `result of ${message} after restart`);
  }
  // The process continues from its persisted state.
  const info = await ao.dryrun({ process: pidA, tags: [{ name: "Action", value: "Info" }] });
  const state = typeof info.Output === "object" ? info.Output : JSON.parse(info.Output);
  assert.ok(state.count >= 6, `state survived the restart: ${JSON.stringify(state)}`);
  log(`ok: ${recorded.length} results identical after restart`);
}

try {
  if (command === "run") await run(arg1, arg2);
  else if (command === "verify") await verify(arg1);
  else throw new Error(`unknown command ${command}`);
} catch (e) {
  console.error("[e2e] FAILED:", e && e.stack ? e.stack : e);
  process.exit(1);
}

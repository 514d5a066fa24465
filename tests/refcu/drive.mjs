// Drives the reference-CU check (tests/refcu/check.sh):
//
//   node drive.mjs send <ao-cu-url> <module.wasm> <state-out.json> [<metered-module.wasm>]
//       through ao-cu's MU (aoconnect, legacy mode): registers the Lua test module, spawns two processes,
//       sends a set of messages (outbox messages between the two, an assignment, errors, ...), waits until
//       ao-cu has computed them, records every (process, message) and ao-cu's result. With a pre-metered
//       module: a process signed with an Ethereum key (0x owner), GasUsed, and an out-of-gas message.
//   node drive.mjs compare <ao-cu-url> <ref-cu-url> <state.json>
//       asks the reference CU (GATEWAY_URL = ao-cu) for the same results, `/state` and a dry-run, and compares
//       Output, Messages, Spawns, Assignments, Error (and GasUsed where both report one). Prints a diff of
//       each mismatch; exit 1 if there is one (or if the reference CU failed to answer).
import { readFileSync, writeFileSync } from "node:fs";
import { generateKeyPairSync, createHash, randomBytes } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import * as arbundlesNs from "@dha-team/arbundles";

const arbundles = arbundlesNs.default ?? arbundlesNs;
const { createData, ArweaveSigner, EthereumSigner } = arbundles;
const [, , command, ...args] = process.argv;
const log = (...a) => console.log("[refcu]", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function testWallet() {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 65537 });
  const jwk = privateKey.export({ format: "jwk" });
  return { kty: "RSA", e: jwk.e, n: jwk.n, d: jwk.d, p: jwk.p, q: jwk.q, dp: jwk.dp, dq: jwk.dq, qi: jwk.qi };
}

async function http(method, url, body, timeoutMs = 300_000) {
  const res = await fetch(url, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const buf = Buffer.from(await res.arrayBuffer());
  let json;
  try { json = JSON.parse(buf.toString("utf8")); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, buf, json, text: buf.toString("utf8") };
}

async function eventually(what, f, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try { const v = await f(); if (v) return v; } catch (e) { last = e; }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

const outputText = (o) => (typeof o === "string" ? o : typeof o === "number" ? String(o) : o && typeof o === "object" && "data" in o ? String(o.data) : JSON.stringify(o));

async function send(aocu, wasmPath, stateOut, meteredPath) {
  const ao = connect({ MODE: "legacy", MU_URL: aocu, CU_URL: aocu, GATEWAY_URL: aocu });
  const jwk = testWallet();
  const signer = createDataItemSigner(jwk);
  const root = (await http("GET", `${aocu}/`)).json;
  const scheduler = root.address;

  const moduleItem = createData(readFileSync(wasmPath), new ArweaveSigner(jwk), {
    tags: [
      { name: "Data-Protocol", value: "ao" },
      { name: "Variant", value: "ao.TN.1" },
      { name: "Type", value: "Module" },
      { name: "Module-Format", value: "wasm32-unknown-emscripten2" },
      { name: "Input-Encoding", value: "JSON-1" },
      { name: "Output-Encoding", value: "JSON-1" },
      { name: "Memory-Limit", value: "1-gb" },
      { name: "Compute-Limit", value: "9000000000000" },
      { name: "Content-Type", value: "application/wasm" },
    ],
  });
  await moduleItem.sign(new ArweaveSigner(jwk));
  const up = await fetch(`${aocu}/`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: moduleItem.getRaw() });
  if (!up.ok) throw new Error(`module upload: ${up.status} ${await up.text()}`);
  const moduleId = moduleItem.id;
  log("module", moduleId);

  const spawn = (name) => ao.spawn({ module: moduleId, scheduler, signer, tags: [{ name: "Name", value: name }], data: name });
  const pidA = await spawn("A");
  const pidB = await spawn("B");
  log("processes", pidA, pidB);

  const recorded = [{ label: "A spawn (nonce 0)", process: pidA, message: pidA }, { label: "B spawn (nonce 0)", process: pidB, message: pidB }];
  const msg = async (label, pid, action, data = "", extra = []) => {
    const id = await ao.message({ process: pid, signer, tags: [{ name: "Action", value: action }, ...extra], data });
    recorded.push({ label, process: pid, message: id });
    return id;
  };
  const echoId = await msg("Echo", pidA, "Echo", "hello from aoconnect");
  for (let i = 1; i <= 3; i++) await msg(`Count ${i}`, pidA, "Count");
  await msg("Error (Lua error)", pidA, "Error");
  await msg("Error (table)", pidA, "Error", "", [{ name: "Kind", value: "table" }]);
  await msg("Fail (Error field)", pidA, "Fail", "why");
  await msg("Count after errors", pidA, "Count");
  await msg("Info", pidA, "Info", "", [{ name: "X-Extra", value: "1" }]);
  await msg("Time", pidA, "Time");
  await msg("Random", pidA, "Random", "", [{ name: "Seed", value: "7" }]);
  await msg("Pcall", pidA, "Pcall");
  await msg("Eval", pidA, "Eval", "print('hi'); return 6*7");
  const unicodeId = await msg("Unicode echo", pidA, "Echo", "héllo \u00e9 \u4e16\u754c \ud83d\ude80 tab\tnl\n");
  await msg("Spawn", pidA, "Spawn", "child data");
  await msg("Assign", pidA, "Assign", "", [{ name: "Processes", value: `${pidB},${pidA}` }, { name: "Message", value: echoId }]);
  await msg("No handler", pidA, "Nope");
  await msg("Memory", pidA, "Memory");
  // A -> B through the outbox (B gets a pushed message: From-Process / Forwarded-By), B replies to A.
  await msg("Send A->B", pidA, "Send", "ping", [{ name: "Recipient", value: pidB }, { name: "Reply-Action", value: "Send" }]);
  // an assignment: A's Unicode Echo message scheduled on B too (hydrated from the gateway by a CU). Not
  // echoId: A's Assign handler asks the outbox to assign that one to B, and whichever comes first wins.
  const assignmentId = await ao.assign({ process: pidB, message: unicodeId });
  log("assignment", assignmentId);
  recorded.push({ label: "Unicode echo assigned to B", process: pidB, message: unicodeId });
  await msg("Count on B", pidB, "Count");
  await msg("Info on B", pidB, "Info");

  // Wait for the outbox traffic to settle on ao-cu: B got "ping" (and replied), A got the reply.
  const bMsgs = await eventually("B to receive A's message and A the reply", async () => {
    const b = await ao.results({ process: pidB, sort: "ASC", limit: 100 });
    const a = await ao.results({ process: pidA, sort: "DESC", limit: 10 });
    const gotPing = b.edges.some((e) => outputText(e.node.Output).startsWith("sent "));
    const gotReply = a.edges.some((e) => outputText(e.node.Output) === "no handler for action Reply");
    return gotPing && gotReply;
  });
  void bMsgs;
  // The process A spawned (the MU spawns it from A's Spawns): found through ao-cu's gateway.
  const child = await eventually("the process spawned by A", async () => {
    const q = `query { transactions(tags: [{name: "From-Process", values: ["${pidA}"]}, {name: "Type", values: ["Process"]}], first: 5) { edges { node { id } } } }`;
    const r = await http("POST", `${aocu}/graphql`, { query: q });
    return r.json?.data?.transactions?.edges?.[0]?.node?.id;
  });
  recorded.push({ label: "child of A (nonce 0)", process: child, message: child });
  await eventually("ao-cu to compute the child", async () => (await http("GET", `${aocu}/result/${child}?process-id=${child}`)).status === 200);

  // A cron process: Cron-Interval 2-seconds; two messages 5 s and 8 s after the spawn read the cron count.
  const pidCron = await ao.spawn({
    module: moduleId, scheduler, signer, data: "cron",
    tags: [{ name: "Name", value: "Cron" }, { name: "Cron-Interval", value: "2-seconds" }, { name: "Cron-Tag-Action", value: "Cron" }],
  });
  log("cron process", pidCron);
  recorded.push({ label: "cron process (nonce 0)", process: pidCron, message: pidCron });
  await sleep(5000);
  await msg("cron count after 5 s", pidCron, "Eval", "return State.Cron");
  await sleep(3000);
  await msg("cron count after 8 s", pidCron, "Eval", "return State.Cron");

  // A process on the pre-metered module, signed by an Ethereum key (owner/From are 0x addresses), with a low
  // Compute-Limit so that Loop runs out of gas; data items posted to the MU directly (aoconnect signs only RSA).
  let pidEth;
  if (meteredPath) {
    const arw = new ArweaveSigner(jwk);
    const eth = new EthereumSigner(randomBytes(32).toString("hex"));
    const T = (o) => Object.entries(o).map(([name, value]) => ({ name, value }));
    const item = async (signer, data, tags, target, anchor) => {
      const it = createData(data, signer, { tags, target, anchor });
      await it.sign(signer);
      const r = await fetch(`${aocu}/`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: it.getRaw() });
      if (!r.ok) throw new Error(`MU: ${r.status} ${await r.text()}`);
      return it.id;
    };
    const metered = await item(arw, readFileSync(meteredPath), T({
      "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Module", "Module-Format": "wasm32-unknown-emscripten2",
      "Input-Encoding": "JSON-1", "Output-Encoding": "JSON-1", "Memory-Limit": "1-gb", "Compute-Limit": "9000000000000",
    }));
    pidEth = await item(eth, "eth", T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Process", Module: metered, Scheduler: scheduler, "Compute-Limit": "3000000000" }));
    recorded.push({ label: "metered/eth process (nonce 0)", process: pidEth, message: pidEth });
    const emsg = async (label, action, anchor) => {
      const id = await item(eth, `${label}`, T({ "Data-Protocol": "ao", Variant: "ao.TN.1", Type: "Message", Action: action }), pidEth, anchor);
      recorded.push({ label, process: pidEth, message: id });
    };
    await emsg("metered Count", "Count");
    await emsg("metered Info (anchor, 0x owner)", "Info", randomBytes(24).toString("base64url"));
    await emsg("metered Loop (out of gas)", "Loop");
    await emsg("metered Count after out of gas", "Count");
    await emsg("metered Error", "Error");
    await emsg("metered Fail", "Fail");
    log("metered process", pidEth);
  }

  // The pushed messages have ids only the SU knows: read them from ao-cu's SU (every message of both).
  const name = (p) => (p === pidA ? "A" : p === pidB ? "B" : p === child ? "child" : p);
  for (const pid of [pidA, pidB, child]) {
    const page = (await http("GET", `${aocu}/${pid}?process-id=${pid}&limit=1000`)).json;
    for (const e of page.edges) {
      const id = e.node.message?.id ?? e.node.assignment.tags.find((t) => t.name === "Message")?.value;
      if (!recorded.some((r) => r.process === pid && r.message === id)) {
        const from = (e.node.message?.tags ?? []).find((t) => t.name === "From-Process")?.value;
        recorded.push({ label: `pushed to ${name(pid)}${from ? " from " + name(from) : ""}`, process: pid, message: id });
      }
    }
  }
  // ao-cu's own results for every recorded message
  for (const r of recorded) {
    const res = await http("GET", `${aocu}/result/${r.message}?process-id=${r.process}`, undefined, 600_000);
    if (res.status !== 200) throw new Error(`ao-cu result of ${r.label}: ${res.status} ${res.text}`);
    r.aocu = res.json;
  }
  const cronSlots = (await http("GET", `${aocu}/${pidCron}?process-id=${pidCron}&limit=1000`)).json.edges;
  const cronLastTs = Math.max(...cronSlots.map((e) => Number(e.node.assignment.tags.find((t) => t.name === "Timestamp").value)));
  writeFileSync(stateOut, JSON.stringify({ moduleId, pidA, pidB, child, pidCron, pidEth, cronLastTs, assignmentId, recorded }, null, 1));
  log(`sent; ${recorded.length} results recorded from ao-cu`);
}

const FIELDS = ["Output", "Messages", "Spawns", "Assignments", "Error"];

/** The parts of a result that must agree. Output numbers become strings in both CUs; Error text only. */
function comparable(r) {
  const out = {};
  for (const f of FIELDS) if (r[f] !== undefined) out[f] = r[f];
  return out;
}

function diffLines(a, b, path = "") {
  if (isDeepStrictEqual(a, b)) return [];
  const lines = [];
  const isObj = (v) => v && typeof v === "object";
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) lines.push(...diffLines(a[k], b[k], `${path}${Array.isArray(a) ? `[${k}]` : `.${k}`}`));
    return lines;
  }
  lines.push(`    ${path || "(value)"}:\n      ao-cu: ${JSON.stringify(a)}\n      ref:   ${JSON.stringify(b)}`);
  return lines;
}

async function compare(aocu, ref, statePath) {
  const state = JSON.parse(readFileSync(statePath, "utf8"));
  // strict: GasUsed values, GasUsed presence and /state bytes must agree too. check.sh sets it when ao-cu can be
  // given the reference's program name (argv[0] and `_`), on which linear memory and so gas depend.
  const strict = process.env.REFCU_STRICT === "1";
  let bad = 0;
  let good = 0;
  const notes = [];
  const soft = (line) => { if (strict) { bad++; console.log(`MISMATCH ${line}`); } else notes.push(line); };
  // /state?to=<timestamp of B's nonce 2>, asked first (the reference answers 425 for a point earlier than what it
  // has evaluated): both must evaluate only up to it (Last-Ordinate / Last-Timestamp headers).
  {
    const slots = (await http("GET", `${aocu}/${state.pidB}?process-id=${state.pidB}&limit=1000`)).json.edges;
    const mid = slots[Math.min(2, slots.length - 1)].node.assignment.tags;
    const ts = mid.find((t) => t.name === "Timestamp").value;
    const nonce = mid.find((t) => t.name === "Nonce").value;
    const [a, b] = await Promise.all([http("GET", `${aocu}/state/${state.pidB}?to=${ts}`), http("GET", `${ref}/state/${state.pidB}?to=${ts}`)]);
    const o = (x) => `${x.status} last-ordinate=${x.headers.get("last-ordinate")} last-timestamp=${x.headers.get("last-timestamp")}`;
    if (a.status !== 200 || b.status !== 200 || a.headers.get("last-ordinate") !== b.headers.get("last-ordinate") || a.headers.get("last-timestamp") !== b.headers.get("last-timestamp")) {
      bad++;
      console.log(`MISMATCH /state of B ?to=${ts} (nonce ${nonce}): ao-cu ${o(a)} / ref ${o(b)}`);
    } else { good++; console.log(`ok       /state of B ?to= nonce ${nonce}: ${o(b)}`); }
  }
  // A's last slot first: the reference CU then reads A's whole schedule in pages (REFCU_PAGE_SIZE) and caches
  // every evaluation, which the per-message reads below get.
  {
    const slots = (await http("GET", `${aocu}/${state.pidA}?process-id=${state.pidA}&limit=1000`)).json.edges;
    const last = slots.at(-1).node;
    const id = last.message?.id ?? last.assignment.tags.find((t) => t.name === "Message").value;
    const r = await http("GET", `${ref}/result/${id}?process-id=${state.pidA}`, undefined, 600_000);
    console.log(`${r.status === 200 ? "ok      " : "MISMATCH"} A's last slot first (${slots.length} slots): reference CU ${r.status}`);
    if (r.status === 200) good++; else bad++;
  }
  for (const r of state.recorded) {
    const res = await http("GET", `${ref}/result/${r.message}?process-id=${r.process}`, undefined, 600_000);
    if (res.status !== 200) {
      bad++;
      console.log(`MISMATCH ${r.label} (${r.message}): reference CU ${res.status} ${res.text.slice(0, 500)}`);
      continue;
    }
    const a = comparable(r.aocu);
    const b = comparable(res.json);
    const d = diffLines(a, b);
    const gasA = r.aocu.GasUsed;
    const gasB = res.json.GasUsed;
    if (typeof gasA === "number" && typeof gasB === "number" && gasA !== gasB) soft(`${r.label}: GasUsed ao-cu ${gasA} / ref ${gasB}`);
    else if ((gasA === undefined) !== (gasB === undefined)) soft(`${r.label}: GasUsed only in ${gasA === undefined ? "the reference's" : "ao-cu's"} answer (${gasA ?? gasB})`);
    if (d.length) {
      bad++;
      console.log(`MISMATCH ${r.label} (${r.message}):\n${d.join("\n")}`);
    } else {
      good++;
      console.log(`ok       ${r.label}: ${JSON.stringify(b.Error ?? outputText(b.Output)).slice(0, 100)}${typeof gasB === "number" && gasB ? ` gas ${gasB}` : ""}`);
    }
  }
  // /results: the cached (non-error) results of A, in schedule order, on both.
  {
    const page = async (base) => { const r = await http("GET", `${base}/results/${state.pidA}?sort=ASC&limit=1000`); return r.status === 200 ? r.json.edges.map((e) => comparable(e.node)) : `${r.status} ${r.text.slice(0, 200)}`; };
    const [a, b] = [await page(aocu), await page(ref)];
    const d = typeof a === "string" || typeof b === "string" ? [`    ao-cu: ${typeof a === "string" ? a : "ok"} / ref: ${typeof b === "string" ? b : "ok"}`] : diffLines(a, b);
    if (d.length) { bad++; console.log(`MISMATCH /results of A:\n${d.join("\n")}`); } else { good++; console.log(`ok       /results of A: ${b.length} results`); }
  }
  // Dry-runs: the same read-only message on both, at the latest state.
  for (const [label, pid, tags] of [
    ["dry-run Info on A", state.pidA, [{ name: "Action", value: "Info" }]],
    ["dry-run Count on A", state.pidA, [{ name: "Action", value: "Count" }]],
    ["dry-run Info on B", state.pidB, [{ name: "Action", value: "Info" }]],
  ]) {
    const body = { Id: "1234", Target: pid, Owner: "1234", Anchor: "0", Data: "1234", Tags: [...tags, { name: "Data-Protocol", value: "ao" }, { name: "Type", value: "Message" }, { name: "Variant", value: "ao.TN.1" }] };
    const [a, b] = await Promise.all([http("POST", `${aocu}/dry-run?process-id=${pid}`, body), http("POST", `${ref}/dry-run?process-id=${pid}`, body)]);
    if (a.status !== 200 || b.status !== 200) {
      bad++;
      console.log(`MISMATCH ${label}: ao-cu ${a.status} ${a.text.slice(0, 300)} / reference CU ${b.status} ${b.text.slice(0, 300)}`);
      continue;
    }
    const d = diffLines(comparable(a.json), comparable(b.json));
    if (d.length) { bad++; console.log(`MISMATCH ${label}:\n${d.join("\n")}`); } else { good++; console.log(`ok       ${label}: ${outputText(b.json.Output).slice(0, 100)}`); }
  }
  // /cron: the cron results up to the cron process's last scheduled message (later ones depend on when asked).
  {
    const cursorTs = (c) => { try { return JSON.parse(Buffer.from(c, "base64").toString("utf8")).timestamp; } catch { return undefined; } };
    const crons = async (base) => {
      const r = await http("GET", `${base}/cron/${state.pidCron}?limit=1000`);
      if (r.status !== 200) return { error: `${r.status} ${r.text.slice(0, 300)}` };
      return { list: r.json.edges.filter((e) => (cursorTs(e.cursor) ?? Infinity) <= state.cronLastTs).map((e) => comparable(e.node)) };
    };
    const [a, b] = [await crons(aocu), await crons(ref)];
    if (a.error || b.error) { bad++; console.log(`MISMATCH cron results: ao-cu ${a.error ?? "ok"} / reference CU ${b.error ?? "ok"}`); }
    else {
      const d = diffLines(a.list, b.list);
      if (d.length || !b.list.length) { bad++; console.log(`MISMATCH cron results (${a.list.length} vs ${b.list.length}):\n${d.join("\n")}`); }
      else { good++; console.log(`ok       cron results: ${b.list.length} crons, last ${JSON.stringify(b.list.at(-1).Output)}`); }
    }
  }
  // /state: the raw memory after the latest message (its headers must agree; its bytes only when strict).
  for (const [label, pid] of [["state A", state.pidA], ["state B", state.pidB], ["state child", state.child], ...(state.pidEth ? [["state metered", state.pidEth]] : [])]) {
    const [a, b] = await Promise.all([http("GET", `${aocu}/state/${pid}`), http("GET", `${ref}/state/${pid}`)]);
    const h = (x) => (x.status === 200 ? `${x.buf.length} bytes sha256 ${createHash("sha256").update(x.buf).digest("hex").slice(0, 16)}` : `${x.status} ${x.text.slice(0, 200)}`);
    const hdr = (x) => ["last-timestamp", "last-ordinate", "last-block-height"].map((k) => `${k}=${x.headers.get(k)}`).join(" ");
    const same = a.status === 200 && b.status === 200 && a.buf.equals(b.buf);
    if (same) { good++; console.log(`ok       ${label}: ${h(b)}`); }
    else if (a.status !== 200 || b.status !== 200 || hdr(a) !== hdr(b)) { bad++; console.log(`MISMATCH ${label}: ao-cu ${h(a)} [${hdr(a)}] / ref ${h(b)} [${hdr(b)}]`); }
    else soft(`${label}: memory differs: ao-cu ${h(a)} [${hdr(a)}] / ref ${h(b)} [${hdr(b)}]`);
  }
  if (notes.length) {
    console.log(`\nknown differences, not failures (REFCU_STRICT=1 makes them failures; check.sh sets it when ao-cu serve has --this-program):`);
    console.log(`  (memory and so GasUsed depend on the program name the glue gives main as argv[0] and \`_\`: the reference uses its worker script's path)`);
    for (const n of notes) console.log(`  ${n}`);
  }
  console.log(`\n${good} passed, ${bad} failed`);
  process.exit(bad ? 1 : 0);
}

try {
  if (command === "send") await send(...args);
  else if (command === "compare") await compare(...args);
  else { console.error("usage: node drive.mjs send <ao-cu-url> <wasm> <state-out> | compare <ao-cu-url> <ref-cu-url> <state>"); process.exit(2); }
} catch (e) {
  console.error("[refcu] FAILED:", e && e.stack ? e.stack : e);
  process.exit(1);
}

// The load of the cluster test (crates/ao-cu/tests/cluster.rs), with the real @permaweb/aoconnect through
// the proxy in front of the ao-cu nodes:
//
//   node cluster.mjs run <proxy-url> <lua-process.wasm> <processes> <messages> <out.json>
//       registers the Lua test module, spawns <processes> processes, and sends each <messages> messages,
//       in order per process, many processes at once. Every 10th message of process i is a `Send` whose
//       outbox message (`Action = Count`) goes to process i+1 (so outbox delivery crosses nodes); the
//       others are `Count`. A send that fails (a node was killed under it) is tried again with a new item
//       after a pause; what the MU acknowledged is written to <out.json>.
//   node cluster.mjs verify <url> <out.json>
//       against each process's schedule as the SU API gives it (nonces 0..n): every acknowledged message is
//       on it exactly once and has its result; every Send's outbox message was delivered to the next
//       process exactly once; the Count outputs are exactly 1..K in schedule order, K = the Counts on the
//       schedule (nothing lost, nothing evaluated twice, state continuous across the nodes that owned the
//       process); unacknowledged sends that were scheduled anyway (a node died after scheduling, before
//       answering) are no more than the sends tried again.
//   node cluster.mjs dryrun-all <url> <out.json>
//       dry-runs every process at once until each answers; prints how long that took (bench/cluster.sh).
//
// Exit status 0 = every assertion held. The wallet is generated per run (test-only, never stored).
import { readFileSync, writeFileSync } from "node:fs";
import { strict as assert } from "node:assert";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import { moduleItem as signedModule, testWallet } from "./common.mjs";

const [, , command, baseUrl, ...rest] = process.argv;
const log = (...args) => console.log("[cluster]", ...args);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `f` until it succeeds (a node died under it: the proxy and the cluster move the work elsewhere). */
async function retried(what, f, tries = 60) {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      if (i >= tries) throw new Error(`${what}: ${e.message}`);
      await sleep(250);
    }
  }
}

/** Runs `jobs` (async functions) with at most `width` at once. */
async function pool(jobs, width) {
  const out = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]();
      }
    }),
  );
  return out;
}

async function run(wasmPath, processes, messages, outPath) {
  const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: baseUrl, GATEWAY_URL: baseUrl });
  const jwk = testWallet();
  const signer = createDataItemSigner(jwk);
  const root = await (await fetch(`${baseUrl}/`)).json();
  const scheduler = root.address;

  const item = await signedModule(jwk, readFileSync(wasmPath));
  const res = await fetch(`${baseUrl}/`, { method: "POST", body: item.getRaw() });
  assert.ok(res.ok, `module upload: ${res.status} ${await res.text()}`);
  const moduleId = item.id;

  const pids = await pool(
    Array.from({ length: processes }, (_, i) => () =>
      retried(`spawn ${i}`, () =>
        ao.spawn({ module: moduleId, scheduler, signer, tags: [{ name: "Name", value: `p${i}` }], data: `p${i}` }),
      ),
    ),
    8,
  );
  log(`spawned ${pids.length} processes`);
  writeFileSync(outPath, JSON.stringify({ pids, acked: [], done: false }));

  const acked = [];
  let retries = 0;
  const started = Date.now();
  await pool(
    pids.map((pid, i) => async () => {
      for (let k = 0; k < messages; k++) {
        const send = (k + 1) % 10 === 0;
        const tags = send
          ? [
              { name: "Action", value: "Send" },
              { name: "Recipient", value: pids[(i + 1) % pids.length] },
              { name: "Reply-Action", value: "Count" },
            ]
          : [{ name: "Action", value: "Count" }];
        const id = await retried(`message ${k} of ${pid}`, async () => {
          try {
            return await ao.message({ process: pid, signer, tags, data: `${k}` });
          } catch (e) {
            retries++;
            throw e;
          }
        });
        acked.push({ process: pid, id, action: send ? "Send" : "Count" });
      }
    }),
    16,
  );
  const seconds = (Date.now() - started) / 1000;
  log(`${acked.length} messages acknowledged in ${seconds.toFixed(1)} s (${retries} sends tried again)`);
  writeFileSync(outPath, JSON.stringify({ pids, acked, done: true, seconds, retries }));
}

const tagOf = (tags, name) => tags.find((t) => t.name === name)?.value;

/** Every message on `pid`'s schedule, in order (the SU's `GET /{pid}`, paged). */
async function schedule(pid) {
  const byNonce = new Map();
  let from;
  for (;;) {
    const page = await (await fetch(`${baseUrl}/${pid}?limit=1000${from ? `&from=${from}` : ""}`)).json();
    if (!Array.isArray(page.edges)) throw new Error(JSON.stringify(page));
    for (const e of page.edges) byNonce.set(Number(tagOf(e.node.assignment.tags, "Nonce")), e.node.message);
    if (!page.page_info?.has_next_page || page.edges.length === 0) break;
    from = page.edges[page.edges.length - 1].cursor;
  }
  const nonces = [...byNonce.keys()].sort((a, b) => a - b);
  assert.deepEqual(nonces, nonces.map((_, i) => i), `process ${pid}: nonces 0..n`);
  return nonces.map((n) => byNonce.get(n));
}

async function verify(outPath) {
  const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: baseUrl, GATEWAY_URL: baseUrl });
  const { pids, acked, done, retries } = JSON.parse(readFileSync(outPath, "utf8"));
  assert.ok(done, "the run finished");
  // Every acknowledged message has its result.
  await pool(
    acked.map((m) => async () => {
      // A node answers 503 while the process moves between nodes: read again.
      const r = await retried(
        `result of ${m.id}`,
        async () => {
          const r = await ao.result({ message: m.id, process: m.process });
          if (!Array.isArray(r?.Messages)) throw new Error(JSON.stringify(r));
          return r;
        },
        120,
      );
      assert.equal(r.Error, undefined, `${m.action} ${m.id}: ${JSON.stringify(r)}`);
      if (m.action === "Send") assert.equal(r.Messages.length, 1, `Send's outbox: ${JSON.stringify(r)}`);
    }),
    16,
  );
  // Each process's schedule, read from the SU API: every acknowledged message on it exactly once; what
  // else is on it are its neighbour's outbox messages and sends whose acknowledgement was lost (a node
  // died after scheduling, before answering), which the client then sent again as a new item.
  const acks = new Map(pids.map((p) => [p, new Set()]));
  for (const m of acked) acks.get(m.process).add(m.id);
  const counts = new Map();
  let unacked = 0;
  // Every Send's outbox message is delivered to the next process exactly once (across nodes: the item is
  // kept, so a retried hand-over is the same message); delivery is asynchronous, so wait for it.
  const schedules = new Map();
  await retried(
    "outbox deliveries",
    async () => {
      await pool(
        pids.map((pid) => async () => schedules.set(pid, await schedule(pid))),
        8,
      );
      pids.forEach((pid, i) => {
        const sends = schedules.get(pid).filter((m) => tagOf(m.tags, "Action") === "Send").length;
        const next = pids[(i + 1) % pids.length];
        const delivered = schedules.get(next).filter((m) => tagOf(m.tags, "From-Process") === pid).length;
        if (delivered > sends) throw new assert.AssertionError({ message: `${pid}: ${sends} Sends, ${delivered} delivered` });
        if (delivered < sends) throw new Error(`${pid}: ${delivered} of ${sends} Sends delivered yet`);
      });
    },
    240,
  );
  // A dry-run evaluates each process to the end of its log (the results of messages nobody asked for
  // are computed lazily).
  await pool(
    pids.map((pid) => () =>
      retried(`dry-run of ${pid}`, async () => {
        const r = await ao.dryrun({ process: pid, tags: [{ name: "Action", value: "Info" }] });
        if (r?.Error !== undefined || r?.Output === undefined) throw new Error(JSON.stringify(r));
      }),
    ),
    8,
  );
  await pool(
    pids.map((pid) => async () => {
      const scheduled = schedules.get(pid);
      const ids = scheduled.map((m) => m.id);
      assert.equal(new Set(ids).size, ids.length, `process ${pid}: a message scheduled twice`);
      for (const id of acks.get(pid)) assert.ok(ids.includes(id), `acknowledged ${id} is scheduled on ${pid}`);
      const direct = scheduled.filter((m) => !tagOf(m.tags, "From-Process") && tagOf(m.tags, "Type") === "Message");
      unacked += direct.filter((m) => !acks.get(pid).has(m.id)).length;
      counts.set(pid, scheduled.filter((m) => tagOf(m.tags, "Action") === "Count").length);
    }),
    8,
  );
  assert.ok(unacked <= retries, `${unacked} unacknowledged messages scheduled, ${retries} sends tried again`);
  await pool(
    pids.map((pid) => async () => {
      const expected = counts.get(pid);
      // Outbox Counts arrive asynchronously: read until all of them are there.
      const numbers = await retried(
        `results of ${pid}`,
        async () => {
          const seen = [];
          let from;
          for (;;) {
            const url = `${baseUrl}/results/${pid}?sort=ASC&limit=1000${from ? `&from=${encodeURIComponent(from)}` : ""}`;
            const page = await (await fetch(url)).json();
            if (!Array.isArray(page.edges)) throw new Error(JSON.stringify(page));
            for (const e of page.edges) seen.push(e.node.Output);
            if (!page.pageInfo?.hasNextPage) break;
            from = page.edges[page.edges.length - 1].cursor;
          }
          const numbers = seen
            .map((o) => (o && typeof o === "object" && "data" in o ? o.data : o))
            .filter((o) => /^\d+$/.test(String(o)))
            .map(Number);
          if (numbers.length < expected) throw new Error(`${numbers.length} of ${expected} Counts yet`);
          return numbers;
        },
        240,
      );
      assert.deepEqual(
        numbers,
        Array.from({ length: expected }, (_, i) => i + 1),
        `process ${pid}: Count outputs in schedule order`,
      );
    }),
    8,
  );
  log(`verified ${acked.length} messages over ${pids.length} processes (${unacked} unacknowledged sends were scheduled)`);
}

/** Dry-runs every process at once (each tried again until it answers); prints the time until the last
 * answered (bench/cluster.sh: the failover time after a node is killed). */
async function dryrunAll(outPath) {
  const ao = connect({ MODE: "legacy", MU_URL: baseUrl, CU_URL: baseUrl, GATEWAY_URL: baseUrl });
  const { pids } = JSON.parse(readFileSync(outPath, "utf8"));
  const started = Date.now();
  await pool(
    pids.map((pid) => () =>
      retried(
        `dry-run of ${pid}`,
        async () => {
          const r = await ao.dryrun({ process: pid, tags: [{ name: "Action", value: "Info" }] });
          if (r?.Error !== undefined || r?.Output === undefined) throw new Error(JSON.stringify(r));
        },
        400,
      ),
    ),
    pids.length,
  );
  log(`all ${pids.length} processes answered a dry-run after ${Date.now() - started} ms`);
}

if (command === "run") {
  const [wasm, processes, messages, out] = rest;
  await run(wasm, Number(processes), Number(messages), out);
} else if (command === "verify") {
  await verify(rest[0]);
} else if (command === "dryrun-all") {
  await dryrunAll(rest[0]);
} else {
  console.error("usage: node cluster.mjs run <url> <wasm> <processes> <messages> <out> | verify <url> <out>");
  process.exit(2);
}

// A logging HTTP proxy between the reference Node CU (permaweb/ao servers/cu) and `ao-cu serve` (its SU,
// gateway and Arweave). Every request the reference CU makes is appended to a JSONL log: method, path,
// request body (GraphQL: query + variables), status, and the start of the answer.
//
//   node proxy.mjs <listen-port> <upstream-url> <log.jsonl> [patches]
//
// `patches` (comma-separated, default none) rewrites requests/answers to get past a known incompatibility,
// so that the check can go further; each one that fires is logged as {"patch": name, ...}. A clean ao-cu
// needs none. Names: see PATCHES below.
import http from "node:http";
import { appendFileSync } from "node:fs";

const [, , portArg, upstreamArg, logPath, patchArg = ""] = process.argv;
if (!portArg || !upstreamArg || !logPath) {
  console.error("usage: node proxy.mjs <listen-port> <upstream-url> <log.jsonl> [patch,patch...]");
  process.exit(2);
}
const upstream = new URL(upstreamArg);
const enabled = new Set(patchArg.split(",").map((s) => s.trim()).filter(Boolean));
const MAX_LOG = 2000;

const log = (entry) => appendFileSync(logPath, JSON.stringify({ t: Date.now(), ...entry }) + "\n");
const clip = (s) => (s.length > MAX_LOG ? s.slice(0, MAX_LOG) + `...(${s.length} chars)` : s);

// Each patch: { req?(ctx) -> mutate ctx.path / ctx.body (Buffer), res?(ctx, status, headers, body) -> {status, body} | undefined }
const PATCHES = {
  // A process spawned by a process (through ao-cu's MU) has no `Scheduler` tag; the reference MU adds the
  // spawning process's scheduler (servers/mu/src/domain/lib/spawn-process.js) and ao-scheduler-utils'
  // locate needs it ("SchedulerTagNotFound"). Adds `Scheduler = <ao-cu's address>` to Type=Process
  // transactions in GraphQL answers that lack one.
  "scheduler-tag": {
    res(ctx, status, headers, body) {
      if (!ctx.path.startsWith("/graphql") || status !== 200) return;
      let j;
      try { j = JSON.parse(body.toString("utf8")); } catch { return; }
      let changed = false;
      for (const e of j?.data?.transactions?.edges ?? []) {
        const tags = e?.node?.tags;
        if (!Array.isArray(tags)) continue;
        if (tags.some((t) => t.name === "Type" && t.value === "Process") && !tags.some((t) => t.name === "Scheduler")) {
          tags.push({ name: "Scheduler", value: upstreamAddress });
          changed = true;
          ctx.fired("scheduler-tag", { id: e.node.id });
        }
      }
      if (changed) return { status, body: Buffer.from(JSON.stringify(j)) };
    },
  },
};

let upstreamAddress = "";
if (enabled.has("scheduler-tag")) {
  for (let i = 0; !upstreamAddress; i++) {
    try {
      upstreamAddress = (await (await fetch(new URL("/", upstream))).json()).address;
    } catch (e) {
      if (i >= 120) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

for (const name of enabled) if (!PATCHES[name]) { console.error(`proxy: unknown patch ${name}`); process.exit(2); }

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const ctx = {
      method: req.method,
      path: req.url,
      body: Buffer.concat(chunks),
      patches: [],
      fired(name, info) { this.patches.push(name); log({ patch: name, ...info }); },
    };
    const original = { path: ctx.path };
    for (const name of enabled) PATCHES[name].req?.(ctx);
    const headers = { ...req.headers, host: upstream.host };
    delete headers["content-length"];
    if (ctx.body.length) headers["content-length"] = String(ctx.body.length);
    const up = http.request(
      { hostname: upstream.hostname, port: upstream.port, method: ctx.method, path: ctx.path, headers },
      (ures) => {
        const rchunks = [];
        ures.on("data", (c) => rchunks.push(c));
        ures.on("end", () => {
          let status = ures.statusCode;
          let body = Buffer.concat(rchunks);
          const rheaders = { ...ures.headers };
          for (const name of enabled) {
            const out = PATCHES[name].res?.(ctx, status, rheaders, body);
            if (out) ({ status, body } = out);
          }
          delete rheaders["content-length"];
          delete rheaders["transfer-encoding"];
          rheaders["content-length"] = String(body.length);
          res.writeHead(status, rheaders);
          res.end(body);
          const ct = String(rheaders["content-type"] || "");
          const text = /json|text/.test(ct) || body.length < 200 ? body.toString("utf8") : `<${body.length} bytes ${ct}>`;
          const reqText = ctx.body.length ? (/graphql/.test(ctx.path) ? ctx.body.toString("utf8") : `<${ctx.body.length} bytes>`) : undefined;
          log({
            method: ctx.method,
            path: original.path,
            ...(ctx.path !== original.path ? { sent_path: ctx.path } : {}),
            ...(reqText ? { req: clip(reqText) } : {}),
            status,
            res: clip(text),
            ...(ctx.patches.length ? { patched: ctx.patches } : {}),
          });
        });
      },
    );
    up.on("error", (e) => {
      log({ method: ctx.method, path: original.path, error: String(e) });
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `proxy: ${e}` }));
    });
    up.end(ctx.body);
  });
});
server.listen(Number(portArg), "127.0.0.1", () => console.log(`proxy listening on 127.0.0.1:${portArg} -> ${upstream.origin}`));

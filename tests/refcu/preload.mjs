// Loaded into the reference CU with `node --import`: @permaweb/ao-scheduler-utils asks the public
// su-router (https://su-router.ao-testnet.xyz) first for every process it has not located, and a network
// error there rejects the whole `locate` (no catch). A local check has no network, so that one host is
// answered 404 here ("not routed") and the reference falls back to the gateway's Scheduler-Location
// record, which is what this check tests.
// Also: the reference CU targets Node 22 (its Dockerfile: node:22) and calls Promise.withResolvers
// (src/domain/lib/evaluate.js); Node 20 lacks it, so it is defined here when missing.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  if (url.startsWith("https://su-router.ao-testnet.xyz")) return new Response("not routed (local check)", { status: 404 });
  return realFetch(input, init);
};

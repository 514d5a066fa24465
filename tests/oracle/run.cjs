#!/usr/bin/env node
'use strict'
/*
 * Reference oracle driver: evaluates a JSON Lines message log on one AO process through the real
 * reference loader (@permaweb/ao-loader, pinned in package.json) and prints one JSON line per message,
 * shaped like the reference CU's `mergeOutput` (servers/cu/src/effects/worker/evaluate.js).
 *
 *   node tests/oracle/run.cjs --module M.wasm --format FORMAT [--memory-limit BYTES]
 *        [--compute-limit N] [--mode cu|hot] [--messages FILE] [--this-program PATH] [--time-from K]
 *        [--memory-hash each|none]
 *
 * --time-from K: the final summary also gives the evaluation time of messages K.. (0-based) alone, so a
 * benchmark can leave its set-up messages out without differencing two runs.
 * --memory-hash none: no SHA-256 of the memory after each message (MemorySha256 is null). Benchmarks
 * use it: hashing ~100 MB between two timed messages evicts the caches the next one would have found
 * warm, which slowed the reference down by up to 2x against an ao-cu side that hashes nothing.
 * Input: one `{"msg": {...}, "env": {...}}` per line (blank lines ignored), from --messages or stdin.
 * Output (stdout), per message, keys in this order:
 *   {"Output":…,"Messages":[…],"Spawns":[…],"Assignments":[…],"GasUsed":n|null[,"Error":…],"MemorySha256":hex|null}
 * stderr: first line `thisProgram: <path>` (the string the glue uses as argv[0] and as `_=` in environ),
 * then diagnostics and a final timing summary.
 * Exit codes: 0 ok, 1 unexpected failure, 2 usage error, 3 unreadable module or bad message log line,
 * 4 module failed to load.
 */

// The reference CUs run in UTC containers and the glue's _tzset_js/_localtime_js/_mktime_js read the
// host time zone: pin it before anything asks for it.
process.env.TZ = 'UTC'

// wasm64 formats need memory64, behind a flag in Node 20 (the reference CU starts node with it).
// Setting it here, before any module is compiled, is equivalent to passing it on the command line.
require('node:v8').setFlagsFromString('--experimental-wasm-memory64')

const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

// Captured before any glue overrides Date.now / performance.now / process.hrtime.
const hrtimeBigint = process.hrtime.bigint.bind(process.hrtime)

const FORMATS = [
  'wasm32-unknown-emscripten',
  'wasm32-unknown-emscripten2',
  'wasm32-unknown-emscripten3',
  'wasm32-unknown-emscripten4',
  'wasm32-unknown-emscripten-metering',
  'wasm64-unknown-emscripten-draft_2024_02_15',
  'wasm64-unknown-emscripten-draft_2024_10_16-metering'
]

const USAGE = 'usage: node tests/oracle/run.cjs --module M.wasm --format FORMAT [--memory-limit BYTES] ' +
  '[--compute-limit N] [--mode cu|hot] [--messages FILE] [--this-program PATH] [--time-from K] ' +
  '[--memory-hash each|none]\n' +
  `formats: ${FORMATS.join(', ')}`

/** Writes all of `text` to a file descriptor synchronously (retrying on EAGAIN for non-blocking pipes). */
function writeAll (fd, text) {
  const buf = Buffer.from(text, 'utf8')
  let off = 0
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off)
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    }
  }
}
const out = (line) => writeAll(1, line + '\n')
const diag = (line) => writeAll(2, line + '\n')

function fail (code, message) {
  diag(`run.cjs: error: ${message}`)
  process.exit(code)
}

function parseArgs (argv) {
  const opts = { mode: 'cu', memoryHash: 'each' }
  const flags = {
    '--module': 'module',
    '--format': 'format',
    '--memory-limit': 'memoryLimit',
    '--compute-limit': 'computeLimit',
    '--mode': 'mode',
    '--messages': 'messages',
    '--this-program': 'thisProgram',
    '--time-from': 'timeFrom',
    '--memory-hash': 'memoryHash'
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '-h' || arg === '--help') {
      diag(USAGE)
      process.exit(0)
    }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    const key = flags[name]
    if (!key) fail(2, `unknown argument '${arg}'\n${USAGE}`)
    let value
    if (eq > 0) value = arg.slice(eq + 1)
    else {
      if (i + 1 >= argv.length) fail(2, `missing value for ${name}\n${USAGE}`)
      value = argv[++i]
    }
    opts[key] = value
  }
  if (!opts.module) fail(2, `--module is required\n${USAGE}`)
  if (!opts.format) fail(2, `--format is required\n${USAGE}`)
  if (!FORMATS.includes(opts.format)) fail(2, `unknown format '${opts.format}'\n${USAGE}`)
  if (opts.mode !== 'cu' && opts.mode !== 'hot') fail(2, `--mode must be cu or hot, got '${opts.mode}'`)
  if (opts.memoryHash !== 'each' && opts.memoryHash !== 'none') {
    fail(2, `--memory-hash must be each or none, got '${opts.memoryHash}'`)
  }
  for (const key of ['memoryLimit', 'computeLimit']) {
    if (opts[key] === undefined) continue
    if (!/^[0-9]+$/.test(opts[key])) fail(2, `--${key === 'memoryLimit' ? 'memory' : 'compute'}-limit must be a non-negative integer, got '${opts[key]}'`)
    opts[key] = Number(opts[key])
  }
  if (opts.timeFrom !== undefined) {
    if (!/^[0-9]+$/.test(opts.timeFrom)) fail(2, `--time-from must be a non-negative integer, got '${opts.timeFrom}'`)
    opts.timeFrom = Number(opts.timeFrom)
  }
  return opts
}

function readMessages (file) {
  let text
  try {
    text = file ? fs.readFileSync(file, 'utf8') : fs.readFileSync(0, 'utf8')
  } catch (e) {
    fail(3, `cannot read message log ${file || '(stdin)'}: ${e.message}`)
  }
  const entries = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim()
    if (line === '') continue
    let entry
    try {
      entry = JSON.parse(line)
    } catch (e) {
      fail(3, `${file || '(stdin)'}:${i + 1}: not JSON: ${e.message}`)
    }
    const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)
    if (!isObj(entry) || !isObj(entry.msg) || !isObj(entry.env)) {
      fail(3, `${file || '(stdin)'}:${i + 1}: expected {"msg": {...}, "env": {...}}`)
    }
    entries.push({ line: i + 1, msg: entry.msg, env: entry.env })
  }
  return entries
}

/** Makes a thrown value printable: Lua errors are strings or objects; JS errors become "Name: message". */
function errorValue (err) {
  if (err instanceof Error) return String(err)
  if (err === undefined) return 'undefined'
  return err
}

/** The reference CU's `mergeOutput` (effects/worker/evaluate.js), minus the Memory field. */
function mergeOutput (res) {
  res = res ?? {}
  const orDefault = (v, d) => (v === undefined || v === null ? d : v)
  let output = orDefault(res.Output, '')
  if (typeof output === 'number') output = String(output)
  return {
    Error: res.Error === null ? undefined : res.Error,
    Messages: orDefault(res.Messages, []),
    Assignments: orDefault(res.Assignments, []),
    Spawns: orDefault(res.Spawns, []),
    Output: output,
    GasUsed: res.GasUsed === null ? undefined : res.GasUsed
  }
}

/** The CU's rule for keeping the previous memory although no Error was set (legacy aos buffer errors). */
function isBufferAllocationError (res) {
  let o = res.Output || ''
  if (typeof o === 'string') { /* as is */ } else if (typeof o === 'number') o = String(o)
  else if (typeof o === 'object') o = (o.data && o.data.output) ?? ''
  else o = ''
  return typeof o === 'string' && o.endsWith('not enough memory for buffer allocation')
}

const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex')

async function main () {
  const opts = parseArgs(process.argv.slice(2))

  // The emscripten glue passes [process.argv[1], ...process.argv.slice(2)] to main() and puts argv[1] in
  // environ (`_=`); both end up in linear memory. Keep only the script path so that our own CLI flags never
  // influence the memory, optionally replacing it (--this-program) to match another host.
  if (opts.thisProgram !== undefined) process.argv[1] = opts.thisProgram
  process.argv.length = 2
  diag(`thisProgram: ${process.argv[1].replace(/\\/g, '/')}`)

  let binary
  try {
    binary = fs.readFileSync(opts.module)
  } catch (e) {
    fail(3, `cannot read module ${opts.module}: ${e.message}`)
  }
  if (!WebAssembly.validate(binary)) {
    // validate() fails on valid memory64 modules in Node builds without memory64 support; only warn.
    diag(`run.cjs: warning: WebAssembly.validate() rejected ${opts.module} (continuing; loading will tell)`)
  }
  const entries = readMessages(opts.messages)

  // Mute everything the module writes to stdout; our own lines go straight to fd 1.
  process.stdout.write = function (chunk, encoding, cb) {
    if (typeof encoding === 'function') encoding()
    else if (typeof cb === 'function') cb()
    return true
  }

  // Capture the live WebAssembly.Memory of the newest instance (used by --mode hot, where the loader
  // returns nothing after a thrown error).
  let liveMemory = null
  const originalInstantiate = WebAssembly.instantiate
  WebAssembly.instantiate = async function (...args) {
    const result = await originalInstantiate.apply(this, args)
    const instance = result instanceof WebAssembly.Instance ? result : result.instance
    for (const value of Object.values(instance.exports)) {
      if (value instanceof WebAssembly.Memory) liveMemory = value
    }
    return result
  }

  // The emscripten4 glue (formats wasm32-unknown-emscripten4 and wasm32-unknown-emscripten-metering)
  // implements _emscripten_system (Lua os.execute) with child_process.spawnSync(cmd, {shell: true,
  // stdio: 'inherit'}) on the host; in the other glues that code is compiled out (`if (false)`). Refuse:
  // the command would run here and write into our stdout. The message then fails with this error instead
  // of whatever the shell did in the reference CU's container.
  const childProcess = require('node:child_process')
  childProcess.spawnSync = function (command) {
    diag(`run.cjs: warning: the module asked the host to run a shell command (${JSON.stringify(String(command))}); refused`)
    throw new Error(`run.cjs refused host command execution: ${String(command)}`)
  }

  const AoLoader = require('@permaweb/ao-loader')
  const loaderOptions = () => {
    const o = {
      format: opts.format,
      inputEncoding: 'JSON-1',
      outputEncoding: 'JSON-1',
      extensions: {}
    }
    if (opts.memoryLimit !== undefined) o.memoryLimit = opts.memoryLimit
    if (opts.computeLimit !== undefined) o.computeLimit = opts.computeLimit
    if (opts.mode === 'hot') o.UNSAFE_MEMORY = true
    return o
  }
  const instantiate = async () => {
    try {
      return await AoLoader(binary, loaderOptions())
    } catch (e) {
      fail(4, `module ${opts.module} failed to load as ${opts.format}: ${errorValue(e)}`)
    }
  }

  let handle = null
  let memory = null // the memory the CU keeps between messages (mode cu)
  let evalNanos = 0n
  let tailNanos = 0n
  let index = 0
  let instantiations = 0
  let instantiateNanos = 0n
  for (const { msg, env } of entries) {
    if (!handle) {
      const t0 = hrtimeBigint()
      handle = await instantiate()
      instantiateNanos += hrtimeBigint() - t0
      instantiations++
    }
    let res
    const t0 = hrtimeBigint()
    try {
      if (opts.mode === 'cu') {
        const mem = memory === null ? new Uint8Array(null) : memory
        res = await handle(mem, msg, env)
      } else {
        res = await handle(null, msg, env)
      }
    } catch (err) {
      res = { Error: errorValue(err) }
    }
    const took = hrtimeBigint() - t0
    evalNanos += took
    if (opts.timeFrom !== undefined && index >= opts.timeFrom) tailNanos += took
    index++
    const merged = mergeOutput(res)
    let memoryHash = null
    if (opts.mode === 'cu') {
      if (merged.Error === undefined && !isBufferAllocationError(res) && res.Memory) memory = res.Memory
      if (merged.Error !== undefined) handle = null // the CU drops the cached instance after an error
      if (opts.memoryHash === 'each') memoryHash = memory === null ? null : sha256(memory)
    } else if (opts.memoryHash === 'each') {
      memoryHash = liveMemory === null ? null : sha256(new Uint8Array(liveMemory.buffer))
    }
    const line = {
      Output: merged.Output,
      Messages: merged.Messages,
      Spawns: merged.Spawns,
      Assignments: merged.Assignments,
      GasUsed: merged.GasUsed === undefined ? null : merged.GasUsed
    }
    if (merged.Error !== undefined) line.Error = merged.Error
    line.MemorySha256 = memoryHash
    out(JSON.stringify(line))
  }
  const finalMemoryBytes = () => {
    if (opts.mode === 'cu') return memory === null ? 0 : memory.byteLength
    return liveMemory === null ? 0 : liveMemory.buffer.byteLength
  }
  const ms = (n) => (Number(n) / 1e6).toFixed(3)
  diag(`run.cjs: ${entries.length} messages, mode ${opts.mode}, evaluation ${ms(evalNanos)} ms ` +
    `(${entries.length ? ms(evalNanos / BigInt(entries.length)) : '0'} ms/message), ` +
    `${instantiations} instantiations ${ms(instantiateNanos)} ms, final memory ${finalMemoryBytes()} bytes, ` +
    `module ${path.basename(opts.module)}`)
  if (opts.timeFrom !== undefined) diag(`run.cjs: evaluation from message ${opts.timeFrom}: ${ms(tailNanos)} ms`)
}

main().then(
  () => process.exit(0),
  (e) => fail(1, `unexpected failure: ${e && e.stack ? e.stack : e}`)
)

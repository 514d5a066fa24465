#!/usr/bin/env node
'use strict'
/*
 * Self-test of the Lua test process and the oracle driver: builds the modules (tests/modules/build.sh,
 * incremental), runs tests/oracle/run.cjs on every message log and checks what the reference loader
 * answered against what the handlers in process.lua must produce, plus determinism (two runs give
 * identical lines, MemorySha256 included). Exits non-zero with a list of failures.
 *   node tests/modules/lua/check.cjs            (needs emcc 3.1.6, wabt, cargo, node, npm)
 *   SKIP_BUILD=1 node tests/modules/lua/check.cjs
 */
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const repo = path.resolve(__dirname, '..', '..', '..')
const buildDir = path.join(repo, 'tests', 'modules', 'build')
const logs = path.join(repo, 'tests', 'modules', 'lua')
const runCjs = path.join(repo, 'tests', 'oracle', 'run.cjs')
const FORMAT = 'wasm32-unknown-emscripten2'
const plain = path.join(buildDir, 'lua-process.wasm')
const metered = path.join(buildDir, 'lua-process-metered.wasm')

const failures = []
let checks = 0
function expect (cond, what) {
  checks++
  if (!cond) failures.push(what)
}
function eq (actual, expected, what) {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  expect(a === e, `${what}: expected ${e.slice(0, 200)}, got ${String(a).slice(0, 200)}`)
}

if (!process.env.SKIP_BUILD) {
  const b = spawnSync(path.join(repo, 'tests', 'modules', 'build.sh'), { stdio: 'inherit' })
  if (b.status !== 0) {
    console.error('check.cjs: build.sh failed')
    process.exit(1)
  }
}

/** Runs the oracle; returns { lines: parsed objects, raw: stdout text, stderr }. */
function oracle (module, log, extra = []) {
  const args = [runCjs, '--module', module, '--format', FORMAT, '--this-program', 'thisProgram',
    '--messages', path.join(logs, log), ...extra]
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 30 })
  if (r.status !== 0) {
    failures.push(`oracle failed on ${path.basename(module)} ${log} ${extra.join(' ')}: ${r.stderr}`)
    return { lines: [], raw: '', stderr: r.stderr }
  }
  expect(r.stderr.split('\n')[0] === 'thisProgram: thisProgram', `first stderr line names thisProgram (${log})`)
  const lines = r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
  return { lines, raw: r.stdout, stderr: r.stderr }
}

function readLog (log) {
  return fs.readFileSync(path.join(logs, log), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
}
const actionOf = (entry) => ((entry.msg.Tags || []).find((t) => t.name === 'Action') || {}).value
const tagOf = (entry, name) => ((entry.msg.Tags || []).find((t) => t.name === name) || {}).value

function checkShape (lines, log) {
  for (const [i, line] of lines.entries()) {
    const keys = Object.keys(line)
    const want = ['Output', 'Messages', 'Spawns', 'Assignments', 'GasUsed']
    if ('Error' in line) want.push('Error')
    want.push('MemorySha256')
    eq(keys, want, `${log}:${i + 1} key order`)
    expect(Array.isArray(line.Messages) && Array.isArray(line.Spawns) && Array.isArray(line.Assignments),
      `${log}:${i + 1} Messages/Spawns/Assignments are arrays`)
    expect(typeof line.MemorySha256 === 'string' && /^[0-9a-f]{64}$/.test(line.MemorySha256), `${log}:${i + 1} MemorySha256 is hex`)
  }
}

/** After an error the CU keeps the previous memory: same hash as the line before. */
function checkRollback (lines, i, log) {
  expect(i > 0 && lines[i].MemorySha256 === lines[i - 1].MemorySha256, `${log}:${i + 1} memory after an error equals the memory before it`)
}

// ---- messages.jsonl, CU mode, plain module -------------------------------------------------------------
{
  const log = 'messages.jsonl'
  const entries = readLog(log)
  const first = oracle(plain, log)
  const second = oracle(plain, log)
  expect(first.raw !== '' && first.raw === second.raw, `${log}: two runs print identical lines (MemorySha256 included)`)
  const lines = first.lines
  eq(lines.length, entries.length, `${log}: one line per message`)
  checkShape(lines, log)
  const counts = []
  let crons = 0
  for (const [i, entry] of entries.entries()) {
    const out = lines[i]
    if (!out) break
    const where = `${log}:${i + 1} (${actionOf(entry)})`
    const act = actionOf(entry)
    if (entry.msg.Cron) {
      crons++
      eq(out.Output, `cron ${crons} at ${entry.msg.Timestamp}`, where)
      continue
    }
    switch (act) {
      case undefined:
        eq(out.Output, 'no handler for action nil', where)
        break
      case 'Echo':
        eq(out.Output, entry.msg.Data, where)
        eq(out.GasUsed, 0, `${where} GasUsed of an un-metered module`)
        break
      case 'Count':
        counts.push(out.Output)
        break
      case 'Error':
        expect('Error' in out, `${where} has Error`)
        eq(out.GasUsed, null, `${where} GasUsed of a thrown error`)
        if (tagOf(entry, 'Kind') === 'table') eq(out.Error, { code: 42, message: 'boom' }, where)
        else expect(/^process\.lua:\d+: boom$/.test(out.Error), `${where}: Error ${JSON.stringify(out.Error)}`)
        checkRollback(lines, i, log)
        break
      case 'Fail':
        eq(out.Error, `failed on purpose: ${entry.msg.Data}`, where)
        eq(out.Output, 'partial output', where)
        eq(out.GasUsed, 0, where)
        checkRollback(lines, i, log)
        break
      case 'Send': {
        const m = out.Messages[0] || {}
        eq(out.Messages.length, 1, where)
        eq(m.Target, tagOf(entry, 'Recipient'), `${where} Target`)
        eq(m.Data, entry.msg.Data, `${where} Data`)
        expect(/^\d{32}$/.test(m.Anchor), `${where} Anchor`)
        eq((m.Tags || []).map((t) => t.name), ['Data-Protocol', 'Variant', 'Type', 'Reference', 'Action', 'X-Origin'], `${where} tag names`)
        eq((m.Tags || []).find((t) => t.name === 'Action'), { name: 'Action', value: 'Ping' }, `${where} Action tag`)
        break
      }
      case 'Spawn': {
        const s = out.Spawns[0] || {}
        eq(out.Spawns.length, 1, where)
        eq(s.Data, entry.msg.Data === '' ? 'NODATA' : entry.msg.Data, `${where} Data`)
        eq((s.Tags || []).find((t) => t.name === 'Module').value, entry.env.Module.Id, `${where} Module tag`)
        eq((s.Tags || []).find((t) => t.name === 'From-Process').value, entry.env.Process.Id, `${where} From-Process tag`)
        break
      }
      case 'Assign':
        eq(out.Assignments, [{ Message: tagOf(entry, 'Message'), Processes: tagOf(entry, 'Processes').split(',') }], where)
        break
      case 'Time':
        // emscripten2 glue: _emscripten_date_now() == 0, UTC
        eq(out.Output, { clock: 0, date: '1970-01-01 00:00:00', difftime: 0, localdate: '1970-01-01 00:00:00', mktime: 1704067200, time: 0 }, where)
        break
      case 'Random':
        eq(out.Output.reseeded_equal, true, `${where} randomseed repeats the sequence`)
        eq(out.Output.seeded.length, 2, where)
        break
      case 'Pcall':
        expect(typeof out.Output === 'string' && out.Output.startsWith('false|inner|false|process.lua:') &&
          out.Output.endsWith('|false|table error|false|outer after nested|true|no error'), `${where}: ${out.Output}`)
        break
      case 'Grow':
        eq(out.Output, `hoard ${tagOf(entry, 'MB')} MB`, where)
        break
      case 'Memory':
        expect(out.Output.hoard_mb === 2 && out.Output.kb > 2048, `${where}: ${JSON.stringify(out.Output)}`)
        break
      case 'Big':
        eq(out.Output.length, Number(tagOf(entry, 'Size')), `${where} Output length`)
        break
      case 'File':
        if (tagOf(entry, 'Mode') === 'write') eq(out.Output, `wrote ${Buffer.byteLength(entry.msg.Data)} bytes`, where)
        else if (tagOf(entry, 'Name') === 'missing.txt') eq(out.Output, 'read failed: /tmp/missing.txt: No such file or directory', where)
        else if (tagOf(entry, 'Name') === 'kept.txt') eq(out.Output, 'kept between messages', where)
        else eq(out.Output, entry.msg.Data, where)
        break
      case 'Unknown-Action':
        eq(out.Output, 'no handler for action Unknown-Action', where)
        break
      case 'Info':
        eq(out.Output.readonly, entry.msg['Read-Only'], `${where} Read-Only seen by Lua`)
        eq(out.Output.count, 6, `${where} count`)
        eq(out.Output.id, entry.env.Process.Id, `${where} id`)
        eq(out.Output.version, 'Lua 5.3', where)
        break
      case 'Eval':
        break
      default:
        failures.push(`${where}: no expectation for this action`)
    }
  }
  eq(counts, ['1', '2', '3', '4', '5', '6'], `${log}: Count outputs (state after each error is the state before it)`)
  const evals = entries.map((e, i) => [e, lines[i]]).filter(([e]) => actionOf(e) === 'Eval').map(([, l]) => l)
  eq(evals.map((l) => l.Error === undefined ? l.Output : { Error: l.Error }), [
    'x is\t1\n{"empty":[],"list":[1,2,3],"x":1}',
    '2',
    { Error: 'eval: [string "eval"]:1: syntax error near \'is\'' },
    '2',
    { Error: '[string "eval"]:1: eval runtime error' },
    '1\ttwo\tnil\ttrue\n0.3\t9.007199254741e+15\t-0.0\t1e+300\t9223372036854775807'
  ], `${log}: Eval outputs`)

  // hot mode: one live instance, no rollback after errors (the reference's fast path)
  const hot = oracle(plain, log, ['--mode', 'hot'])
  checkShape(hot.lines, `${log} (hot)`)
  const hotCounts = entries.map((e, i) => [e, hot.lines[i]]).filter(([e]) => actionOf(e) === 'Count').map(([, l]) => l && l.Output)
  eq(hotCounts, ['1', '2', '1003', '2004', '3005', '3006'], `${log} (hot): Count outputs without rollback`)
  eq(hot.lines.slice(0, 4).map((l) => l.MemorySha256), lines.slice(0, 4).map((l) => l.MemorySha256),
    `${log}: hot and cu memory agree before the first error`)
}

// ---- metered module: GasUsed, compute limit -------------------------------------------------------------
{
  const log = 'loop.jsonl'
  const args = ['--compute-limit', '9000000000']
  const a = oracle(metered, log, args)
  const b = oracle(metered, log, args)
  expect(a.raw !== '' && a.raw === b.raw, `${log}: two metered runs identical (GasUsed and memory)`)
  checkShape(a.lines, log)
  eq(a.lines.map((l) => l.Error === undefined ? l.Output : l.Error), ['no handler for action nil', '1', 'Error: out of gas!', '2'], `${log} outputs`)
  expect(a.lines.filter((l) => l.Error === undefined).every((l) => Number.isInteger(l.GasUsed) && l.GasUsed > 1e6), `${log}: GasUsed counted on the metered module`)
  eq(a.lines[2] && a.lines[2].GasUsed, null, `${log}: out of gas has no GasUsed`)
  if (a.lines.length === 4) checkRollback(a.lines, 2, log)
}

// ---- recursion, out of memory, a ~110 MB process --------------------------------------------------------
{
  const r = oracle(plain, 'recurse.jsonl')
  checkShape(r.lines, 'recurse.jsonl')
  eq(r.lines.map((l) => l.Error === undefined ? l.Output : 'ERR'), ['no handler for action nil', '1', 'ERR', '2', 'ERR', '3'], 'recurse.jsonl outputs')
  expect(r.lines[2] && /stack overflow$/.test(r.lines[2].Error), `recurse.jsonl: Lua stack overflow (${r.lines[2] && r.lines[2].Error})`)
  eq(r.lines[4] && r.lines[4].Error, 'C stack overflow', 'recurse.jsonl: C stack overflow')

  const o = oracle(plain, 'oom.jsonl')
  checkShape(o.lines, 'oom.jsonl')
  eq(o.lines.map((l) => l.Error === undefined ? l.Output : l.Error).slice(0, 4), ['no handler for action nil', '1', 'not enough memory', '2'], 'oom.jsonl outputs')
  if (o.lines.length === 5) checkRollback(o.lines, 2, 'oom.jsonl')

  const g = oracle(plain, 'grow.jsonl')
  checkShape(g.lines, 'grow.jsonl')
  eq(g.lines.map((l) => typeof l.Output === 'string' ? l.Output : 'object'), ['no handler for action nil', 'hoard 100 MB', 'object', '1', '2', '3', '4', '5'], 'grow.jsonl outputs')
  const m = /final memory (\d+) bytes/.exec(g.stderr)
  expect(m && Number(m[1]) >= 100 * 1024 * 1024 && Number(m[1]) <= 160 * 1024 * 1024, `grow.jsonl: final memory about 110 MB (${m && m[1]})`)
}

if (failures.length) {
  console.error(`check.cjs: ${failures.length} of ${checks} checks failed:`)
  for (const f of failures) console.error(`  - ${f}`)
  process.exit(1)
}
console.error(`check.cjs: all ${checks} checks passed`)

#!/usr/bin/env node
'use strict'
/*
 * WeaveDrive oracle: evaluates a message log through the real reference loader (@permaweb/ao-loader)
 * with the real WeaveDrive extension (@permaweb/weavedrive, both pinned in package.json), set up as the
 * reference CU sets them up (servers/cu/src/domain/lib/loadModule.js and effects/wasm.js): the extension
 * when the module's `Extension` tag names it (or the format is wasm64 draft_2024_02_15), `ARWEAVE` =
 * the gateway, `mode` = the `Availability-Type` (process tag, else module tag, else `Assignments`),
 * `spawn` and `module` = {id, owner, tags}, and per message `blockHeight` = its `Block-Height`.
 *
 *   node tests/oracle/weavedrive.cjs --module M.wasm --format FORMAT --arweave URL < log.jsonl
 *
 * Input: one `{"msg": {...}, "env": {"Process": {Id, Owner, Tags}, "Module": {Id, Owner, Tags}}}` per
 * line. Output: one line per message, `{"Output": …, "Error": …}`; when the extension halts the
 * evaluation (an unhandled rejection, which stops the reference CU's worker), the line is
 * `{"Halted": "<reason>"}` and the driver exits with status 5.
 */
process.env.TZ = 'UTC'
require('node:v8').setFlagsFromString('--experimental-wasm-memory64')

const fs = require('node:fs')
const AoLoader = require('@permaweb/ao-loader')
const WeaveDrive = require('@permaweb/weavedrive')

function arg (name) {
  const i = process.argv.indexOf(name)
  if (i < 0 || i + 1 >= process.argv.length) {
    process.stderr.write(`weavedrive.cjs: ${name} is required\n`)
    process.exit(2)
  }
  return process.argv[i + 1]
}

const tag = (tags, name) => (tags.filter((t) => t.name === name).pop() || {}).value

process.on('unhandledRejection', (e) => {
  process.stderr.write(`weavedrive.cjs: halted: ${(e && e.stack) || e}\n`)
  process.stdout.write(JSON.stringify({ Halted: String((e && e.message) || e) }) + '\n')
  process.exit(5)
})

async function main () {
  const binary = fs.readFileSync(arg('--module'))
  const format = arg('--format')
  const arweave = arg('--arweave')
  const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.trim())
  let handle = null
  let memory = null
  for (const line of lines) {
    const { msg, env } = JSON.parse(line)
    if (!handle) {
      const p = env.Process
      const m = env.Module
      // The reference CU adds the extension for a module `Extension` tag, and always for this wasm64 format.
      const withDrive = m.Tags.some((t) => t.name === 'Extension' && t.value === 'WeaveDrive') ||
        format === 'wasm64-unknown-emscripten-draft_2024_02_15'
      handle = await AoLoader(binary, {
        format,
        ...(withDrive ? { WeaveDrive, ARWEAVE: arweave } : {}),
        mode: tag(p.Tags, 'Availability-Type') || tag(m.Tags, 'Availability-Type') || 'Assignments',
        spawn: { id: p.Id, owner: p.Owner, tags: p.Tags },
        module: { id: m.Id, owner: m.Owner, tags: m.Tags },
        blockHeight: 100,
        memoryLimit: '1-gb',
        computeLimit: 9000000000000
      })
    }
    const result = await handle(memory, msg, env)
    memory = result.Memory
    process.stdout.write(JSON.stringify({ Output: result.Output, Error: result.Error }) + '\n')
  }
}

main().catch((e) => {
  process.stderr.write(`weavedrive.cjs: ${e.stack || e}\n`)
  process.exit(1)
})

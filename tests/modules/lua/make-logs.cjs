#!/usr/bin/env node
'use strict'
/*
 * Writes the message logs of the Lua test process (tests/modules/lua/*.jsonl), one
 * {"msg": {...}, "env": {...}} per line, shaped the way the reference CU builds them
 * (servers/cu/src/domain/lib/evaluate.js + hydrateMessages.js, reference/ao-cu.md §2.7):
 *   msg keys in the order Id, Signature, Data, Owner, Target, Anchor, From, Forwarded-By, Tags, Epoch,
 *   Nonce, Timestamp, Block-Height, Hash-Chain, Cron, Read-Only (absent keys are left out);
 *   env = {"Process":{"Id","Owner","Tags"},"Module":{"Id","Owner","Tags"}}.
 * Everything is derived from fixed strings with SHA-256, so rerunning gives identical files.
 *   node tests/modules/lua/make-logs.cjs [OUT_DIR]   (default: the folder of this script)
 */
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

const outDir = process.argv[2] || __dirname

const b64url = (buf) => buf.toString('base64url')
const digest = (text) => crypto.createHash('sha256').update(text).digest()
/** A 43-character base64url id (the shape of Arweave tx ids and addresses). */
const id43 = (label) => b64url(digest(`ao-cu test id ${label}`))
/** A 683-character base64url string: the shape of a 512-byte RSA-PSS signature. */
function signature (label) {
  const parts = []
  for (let i = 0; parts.length * 32 < 512; i++) parts.push(digest(`ao-cu test signature ${label} ${i}`))
  return b64url(Buffer.concat(parts).subarray(0, 512))
}

const OWNER = id43('owner wallet')
const MODULE_OWNER = id43('module owner')
const SCHEDULER = id43('scheduler')
const MU = id43('messenger unit')
const PEER_PROCESS = id43('peer process')

const tag = (name, value) => ({ name, value: String(value) })

function makeEnv (processId, moduleId, processTags) {
  return {
    Process: { Id: processId, Owner: OWNER, Tags: processTags },
    Module: {
      Id: moduleId,
      Owner: MODULE_OWNER,
      Tags: [
        tag('Data-Protocol', 'ao'),
        tag('Variant', 'ao.TN.1'),
        tag('Type', 'Module'),
        tag('Module-Format', 'wasm32-unknown-emscripten2'),
        tag('Input-Encoding', 'JSON-1'),
        tag('Output-Encoding', 'JSON-1'),
        tag('Memory-Limit', '1-gb'),
        tag('Compute-Limit', '9000000000000'),
        tag('Content-Type', 'application/wasm')
      ]
    }
  }
}

/**
 * A log for one process: the process message first (Id = process id, Epoch/Nonce 0), then scheduled
 * messages with increasing Nonce/Timestamp and a running Hash-Chain, and optional cron messages.
 */
function makeLog (name) {
  const processId = id43(`process ${name}`)
  const moduleId = id43('lua-process module')
  const processTags = [
    tag('Data-Protocol', 'ao'),
    tag('Variant', 'ao.TN.1'),
    tag('Type', 'Process'),
    tag('Module', moduleId),
    tag('Scheduler', SCHEDULER),
    tag('Name', `ao-cu-${name}`),
    tag('Content-Type', 'text/plain')
  ]
  const env = makeEnv(processId, moduleId, processTags)
  const entries = []
  let nonce = 0
  let timestamp = 1717000000000
  let height = 1440000
  let hashChain = b64url(digest(`ao-cu test hash chain ${processId}`))

  function scheduled ({ id, data = '', owner = OWNER, from, forwardedBy, target = processId, tags, readOnly = false }) {
    const msgId = id || id43(`${name} message ${nonce}`)
    hashChain = b64url(digest(Buffer.concat([Buffer.from(hashChain, 'base64url'), Buffer.from(msgId, 'base64url')])))
    const msg = {
      Id: msgId,
      Signature: signature(`${name} ${msgId}`),
      Data: data,
      Owner: owner,
      Target: target,
      Anchor: b64url(digest(`anchor ${msgId}`)).slice(0, 32),
      From: from || owner
    }
    if (forwardedBy) msg['Forwarded-By'] = forwardedBy
    // the CU removes tags named From and Owner before evaluation
    msg.Tags = tags.filter((t) => t.name !== 'From' && t.name !== 'Owner')
    msg.Epoch = 0
    msg.Nonce = nonce
    msg.Timestamp = timestamp
    msg['Block-Height'] = height
    msg['Hash-Chain'] = hashChain
    msg.Cron = false
    msg['Read-Only'] = readOnly
    nonce += 1
    timestamp += 1537
    if (nonce % 4 === 0) height += 1
    entries.push({ msg, env })
  }

  function cron () {
    entries.push({
      msg: {
        Owner: OWNER,
        Target: processId,
        From: OWNER,
        Tags: [tag('Action', 'Cron')],
        Timestamp: timestamp,
        'Block-Height': height,
        Cron: true,
        'Read-Only': false
      },
      env
    })
    timestamp += 1
  }

  /** A message with an Action tag and extra tags, sent by the owner. */
  function action (act, { data = '', tags = [], ...rest } = {}) {
    scheduled({
      data,
      tags: [tag('Data-Protocol', 'ao'), tag('Variant', 'ao.TN.1'), tag('Type', 'Message'), tag('Action', act), ...tags],
      ...rest
    })
  }

  // the process message itself is always first (the aop-6 boot message)
  scheduled({ id: processId, data: 'boot data', tags: processTags })
  return { processId, action, scheduled, cron, entries }
}

function writeLog (file, entries) {
  const text = entries.map((e) => JSON.stringify(e)).join('\n') + '\n'
  fs.writeFileSync(path.join(outDir, file), text)
  process.stderr.write(`wrote ${file}: ${entries.length} messages\n`)
}

// messages.jsonl: every handler that terminates, with errors in the middle (the state after an error
// must be the state before it: Error/Fail/Recurse add 1000 to the counter before failing).
{
  const log = makeLog('messages')
  const { action } = log
  action('Echo', { data: 'hello from ao-cu' })
  action('Count')
  action('Count')
  action('Error')
  action('Count')
  action('Fail', { data: 'on purpose' })
  action('Count')
  action('Error', { tags: [tag('Kind', 'table')] })
  action('Count')
  action('Send', { data: 'ping', tags: [tag('Recipient', PEER_PROCESS), tag('Reply-Action', 'Ping')] })
  action('Spawn', { data: 'child process data' })
  action('Spawn')
  action('Assign', { tags: [tag('Processes', `${PEER_PROCESS},${id43('third process')}`), tag('Message', id43('assigned message'))] })
  action('Time')
  action('Random')
  action('Random', { tags: [tag('Seed', '7')] })
  action('Pcall')
  action('Grow', { tags: [tag('MB', '2')] })
  action('Memory')
  action('Big', { tags: [tag('Size', String(2 * 1024 * 1024))] })
  action('Eval', { data: 'x = (x or 0) + 1\nprint("x is", x)\nreturn { x = x, list = { 1, 2, 3 }, empty = {} }' })
  action('Eval', { data: 'x = x + 1\nreturn x' })
  action('Eval', { data: 'this is not lua' })
  action('Eval', { data: 'return x' })
  action('Eval', { data: 'error("eval runtime error")' })
  action('Eval', { data: 'print(1, "two", nil, true)\nprint(0.1 + 0.2, 2^53, -0.0, 1e300, math.maxinteger)' })
  action('File', { data: 'line one\nline two\n' })
  action('File', { data: 'kept between messages', tags: [tag('Mode', 'write'), tag('Name', 'kept.txt')] })
  action('File', { tags: [tag('Mode', 'read'), tag('Name', 'kept.txt')] })
  action('File', { tags: [tag('Mode', 'read'), tag('Name', 'missing.txt')] })
  log.cron()
  log.cron()
  action('Echo', { data: 'héllo wörld ✓ 𝄞 "quoted" \\ back\\slash\n\ttab \u0001 control \u007f del' })
  action('Echo', { data: '' })
  action('Echo', { data: '{"json":"in data","n":[1,2.5,-3e-7]}' })
  // pushed by a MU from another process: From is the From-Process tag, Owner and Forwarded-By the MU's wallet
  action('Echo', {
    data: 'from a peer process',
    owner: MU,
    from: PEER_PROCESS,
    forwardedBy: MU,
    tags: [tag('From-Process', PEER_PROCESS), tag('From-Module', id43('peer module')), tag('Pushed-For', id43('origin message'))]
  })
  action('Unknown-Action')
  log.scheduled({ data: 'no action tag', tags: [tag('Data-Protocol', 'ao'), tag('Type', 'Message')] })
  action('Count')
  action('Fail')
  action('Info')
  action('Info', { readOnly: true })
  writeLog('messages.jsonl', log.entries)
}

// loop.jsonl: an infinite loop. The reference has no compute limit for un-metered modules: run it only on
// lua-process-metered.wasm with --compute-limit (or on a host with its own limit).
{
  const log = makeLog('loop')
  log.action('Count')
  log.action('Loop')
  log.action('Count')
  writeLog('loop.jsonl', log.entries)
}

// recurse.jsonl: unbounded recursion, in Lua (=> "stack overflow") and through C (=> "C stack overflow").
{
  const log = makeLog('recurse')
  log.action('Count')
  log.action('Recurse')
  log.action('Count')
  log.action('Recurse', { tags: [tag('Kind', 'c')] })
  log.action('Count')
  writeLog('recurse.jsonl', log.entries)
}

// grow.jsonl: grows the process to ~110 MB of linear memory (for benchmarks), then cheap messages.
{
  const log = makeLog('grow')
  log.action('Grow', { tags: [tag('MB', '100')] })
  log.action('Memory')
  for (let i = 0; i < 5; i++) log.action('Count')
  writeLog('grow.jsonl', log.entries)
}

// oom.jsonl: a Grow beyond what the heap can hold (emscripten2 glue: 500 MiB heap max) => Lua
// "not enough memory" error; the process must keep working with its previous state.
{
  const log = makeLog('oom')
  log.action('Count')
  log.action('Grow', { tags: [tag('MB', '600')] })
  log.action('Count')
  log.action('Memory')
  writeLog('oom.jsonl', log.entries)
}

#!/usr/bin/env node
'use strict'
// Pre-meters a wasm module the way the dev-cli's apply-metering.cjs does: @permaweb/wasm-metering's
// meterWASM with its defaults (i32 counter, default cost table), which adds the import metering.usegas(i32).
//   node tests/oracle/meter.cjs IN.wasm OUT.wasm
const fs = require('node:fs')
const metering = require('@permaweb/wasm-metering')

const [input, output] = process.argv.slice(2)
if (!input || !output) {
  process.stderr.write('usage: node tests/oracle/meter.cjs IN.wasm OUT.wasm\n')
  process.exit(2)
}
const metered = metering.meterWASM(fs.readFileSync(input), { meterType: 'i32' })
fs.writeFileSync(output, metered)

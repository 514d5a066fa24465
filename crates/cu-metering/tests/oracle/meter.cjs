// Reference side of the cu-metering differential test.
// usage: node meter.cjs <i32|i64> <in.wasm> <out.wasm> [<in.wasm> <out.wasm> ...]
// Prints one line per module: "OK <ms> <in>" or "ERR <in> <message>".
'use strict'
const fs = require('fs')
const metering = require('@permaweb/wasm-metering')

const [meterType, ...files] = process.argv.slice(2)
for (let i = 0; i + 1 < files.length; i += 2) {
  const input = files[i]
  const output = files[i + 1]
  try {
    const t0 = process.hrtime.bigint()
    const out = metering.meterWASM(fs.readFileSync(input), { meterType })
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    fs.writeFileSync(output, out)
    console.log(`OK ${ms.toFixed(1)} ${input}`)
  } catch (e) {
    console.log(`ERR ${input} ${String(e && e.message).replace(/\s+/g, ' ')}`)
  }
}

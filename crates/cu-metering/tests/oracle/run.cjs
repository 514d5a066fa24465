// Executes metered modules and reports the gas the `metering.usegas` import received, so the
// differential test can compare GasUsed end to end.
// usage: node run.cjs <spec.json>
// spec: [{ "wasm": path, "imports": [{ "module", "name", "result": "i32"|"i64"|"f32"|"f64"|null }],
//          "calls": [{ "name", "args": [["i32"|"i64"|"f32"|"f64", number], ...] }] }]
// Imports other than metering.usegas / metering.out_of_gas return 0 of their result type.
// Modules instrumented by `meter_inline` keep gas in the exported `metering_gas_used` global;
// their `metering_gas_limit` is set to the same limit the usegas host function enforces.
// Prints "INST <wasm> <gas> <status>" and, per call, "CALL <wasm> <name> <gas> <ok|trap:...> <result>".
'use strict'
const fs = require('fs')
const LIMIT = 1e8

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
for (const mod of spec) {
  const gas = { used: 0 }
  const imports = {}
  let memory
  for (const imp of mod.imports) {
    imports[imp.module] = imports[imp.module] || {}
    if (imp.module === 'metering' && imp.name === 'out_of_gas') {
      imports[imp.module][imp.name] = () => {
        throw new Error('out of gas!')
      }
    } else if (imp.module === 'metering' && imp.name === 'usegas') {
      imports[imp.module][imp.name] = (g) => {
        gas.used += Number(g)
        if (gas.used > LIMIT) throw new Error('out of gas!')
      }
    } else if (imp.kind === 'memory') {
      memory = new WebAssembly.Memory({ initial: imp.min, maximum: imp.max })
      imports[imp.module][imp.name] = memory
    } else if (imp.kind === 'table') {
      imports[imp.module][imp.name] = new WebAssembly.Table({ initial: imp.min, element: 'anyfunc' })
    } else if (imp.kind === 'global') {
      const value = imp.result === 'i64' ? 0n : 0
      imports[imp.module][imp.name] = new WebAssembly.Global({ value: imp.result, mutable: !!imp.mutable }, value)
    } else {
      const r = imp.result
      imports[imp.module][imp.name] = () => (r === 'i64' ? 0n : r ? 0 : undefined)
    }
  }
  let instance
  try {
    instance = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(mod.wasm)), imports)
  } catch (e) {
    console.log(`INST ${mod.wasm} ${gas.used} ${String(e && e.message).replace(/\s+/g, ' ')}`)
    continue
  }
  const g = instance.exports.metering_gas_used
  const current = () => (g ? Number(g.value) : gas.used)
  if (instance.exports.metering_gas_limit) instance.exports.metering_gas_limit.value = BigInt(LIMIT)
  console.log(`INST ${mod.wasm} ${current()} ok`)
  for (const call of mod.calls) {
    const before = current()
    const args = call.args.map(([t, v]) => (t === 'i64' ? BigInt(v) : v))
    let status = 'ok'
    let result = ''
    try {
      const r = instance.exports[call.name](...args)
      result = Array.isArray(r) ? r.map(String).join(',') : String(r)
    } catch (e) {
      status = 'trap:' + String(e && e.message).replace(/\s+/g, '_')
    }
    console.log(`CALL ${mod.wasm} ${call.name} ${current() - before} ${status} ${result}`)
  }
}

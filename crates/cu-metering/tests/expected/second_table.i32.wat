;; Output of @permaweb/wasm-metering 0.2.2 meterWASM for tests/corpus/second_table.wat (wasm2wat --no-debug-names).
(module
  (type (;0;) (func (result i32)))
  (type (;1;) (func (param i32)))
  (import "metering" "usegas" (func (;0;) (type 1)))
  (func (;1;) (type 0) (result i32)
    i32.const 10092
    call 0
    i32.const 0
    call_indirect 1 (type 0))
  (table (;0;) 1 funcref)
  (table (;1;) 1 funcref)
  (export "f" (func 1)))

;; Output of @permaweb/wasm-metering 0.2.2 meterWASM for tests/corpus/no_import_section.wat (wasm2wat --no-debug-names).
(module
  (type (;0;) (func (result i32)))
  (type (;1;) (func (param i32) (result i32)))
  (type (;2;) (func))
  (type (;3;) (func (param i64)))
  (import "metering" "usegas" (func (;0;) (type 3)))
  (func (;1;) (type 0) (result i32)
    i64.const 182
    call 0
    i32.const 1
    call 2)
  (func (;2;) (type 1) (param i32) (result i32)
    i64.const 257
    call 0
    local.get 0
    i32.const 2
    i32.mul)
  (func (;3;) (type 2)
    i64.const 92
    call 0
    nop)
  (export "f" (func 1))
  (start 3))

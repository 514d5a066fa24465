;; Output of @permaweb/wasm-metering 0.2.2 meterWASM for tests/corpus/no_type_section.wat (wasm2wat --no-debug-names).
(module
  (type (;0;) (func (param i64)))
  (import "metering" "usegas" (func (;0;) (type 0)))
  (memory (;0;) 1)
  (export "memory" (memory 0))
  (data (;0;) (i32.const 0) "hi"))

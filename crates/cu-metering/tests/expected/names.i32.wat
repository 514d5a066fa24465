;; Output of @permaweb/wasm-metering 0.2.2 meterWASM for tests/corpus/names.wat (wasm2wat --no-debug-names).
(module
  (type (;0;) (func (param i32) (result i32)))
  (type (;1;) (func (param i32)))
  (import "env" "ext" (func (;0;) (type 0)))
  (import "metering" "usegas" (func (;1;) (type 1)))
  (func (;2;) (type 0) (param i32) (result i32)
    (local i32)
    i32.const 631
    call 1
    local.get 0
    call 3
    local.set 1
    local.get 1
    call 0)
  (func (;3;) (type 0) (param i32) (result i32)
    i32.const 302
    call 1
    block  ;; label = @1
      local.get 0
      br_if 0 (;@1;)
    end
    i32.const 211
    call 1
    local.get 0)
  (export "first" (func 2)))

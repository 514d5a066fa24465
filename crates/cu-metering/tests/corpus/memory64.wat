;; memory64 (wasm64 aos): i64 addresses, memory.grow/size with i64, i64 data offsets.
(module
  (import "env" "abort" (func $abort))
  (memory $m i64 1 65536)
  (data (i64.const 1024) "\01\02\03\04")
  (global $sp (mut i64) (i64.const 65536))
  (func $load (export "load") (param $p i64) (result i32)
    local.get $p
    i32.load offset=1024
    local.get $p
    i64.const 8
    i64.add
    i64.load8_u
    i32.wrap_i64
    i32.add)
  (func $grow (export "grow") (param i64) (result i64)
    memory.size
    i64.const 1
    i64.add
    drop
    local.get 0
    memory.grow
    i64.const -1
    i64.eq
    if
      call $abort
    end
    memory.size)
  (func (export "store") (param i64 i64)
    local.get 0
    local.get 1
    i64.store offset=4294967296
    global.get $sp
    i64.const 16
    i64.sub
    global.set $sp))

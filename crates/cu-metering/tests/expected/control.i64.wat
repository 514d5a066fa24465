;; Output of @permaweb/wasm-metering 0.2.2 meterWASM for tests/corpus/control.wat (wasm2wat --no-debug-names).
(module
  (type (;0;) (func (param i32) (result i32)))
  (type (;1;) (func (param i32)))
  (type (;2;) (func (param i32 i32) (result i32)))
  (type (;3;) (func))
  (type (;4;) (func (param i64)))
  (import "env" "log" (func (;0;) (type 1)))
  (import "env" "mem" (memory (;0;) 1 100))
  (import "env" "g" (global (;0;) (mut i32)))
  (import "env" "twice" (func (;1;) (type 0)))
  (import "metering" "usegas" (func (;2;) (type 4)))
  (func (;3;) (type 0) (param i32) (result i32)
    (local i32 i32)
    i64.const 258
    call 2
    local.get 0
    i32.const 2
    i32.lt_u
    if (result i32)  ;; label = @1
      i64.const 301
      call 2
      local.get 0
    else
      i64.const 648
      call 2
      local.get 0
      i32.const 1
      i32.sub
      call 3
      local.get 0
      i32.const 2
      i32.sub
      call 3
      i32.add
    end)
  (func (;4;) (type 0) (param i32) (result i32)
    (local i32)
    i64.const 93
    call 2
    block  ;; label = @1
      loop  ;; label = @2
        i64.const 346
        call 2
        local.get 0
        i32.eqz
        br_if 1 (;@1;)
        i64.const 872
        call 2
        local.get 1
        local.get 0
        i32.add
        local.set 1
        local.get 0
        i32.const 1
        i32.sub
        local.set 0
        br 0 (;@2;)
      end
    end
    i64.const 211
    call 2
    local.get 1)
  (func (;5;) (type 0) (param i32) (result i32)
    i64.const 334
    call 2
    block  ;; label = @1
      block  ;; label = @2
        block  ;; label = @3
          local.get 0
          br_table 0 (;@3;) 1 (;@2;) 2 (;@1;) 0 (;@3;)
        end
        i64.const 182
        call 2
        i32.const 10
        return
      end
      i64.const 273
      call 2
      i32.const 20
      call 0
      i32.const 21
      return
    end
    i64.const 92
    call 2
    i32.const 30)
  (func (;6;) (type 2) (param i32 i32) (result i32)
    i64.const 10331
    call 2
    local.get 1
    local.get 0
    call_indirect (type 0))
  (func (;7;) (type 0) (param i32) (result i32)
    i64.const 10431
    call 2
    memory.size
    drop
    local.get 0
    memory.grow
    i64.const 1508
    call 2
    drop
    i32.const 0
    local.get 0
    i32.store offset=16
    i32.const 8
    i32.const 0
    i32.load offset=16 align=2
    i32.store8
    i32.const 4
    i32.const 0
    i64.load8_u
    i64.const 7
    i64.add
    i64.store32 offset=4
    i32.const 4
    i32.load16_s
    global.get 0
    i32.add
    global.set 1
    global.get 1)
  (func (;8;) (type 0) (param i32) (result i32)
    i64.const 214
    call 2
    block (result i32)  ;; label = @1
      block (result i32)  ;; label = @2
        local.get 0
        if (result i32)  ;; label = @3
          i64.const 182
          call 2
          i32.const 5
          br 1 (;@2;)
          i64.const 181
          call 2
        else
          i64.const 92
          call 2
          i32.const 6
        end
        i64.const 301
        call 2
        local.get 0
        br_if 1 (;@1;)
        i64.const 212
        call 2
        drop
        i32.const 7
      end
    end
    i64.const 469
    call 2
    call 1
    i32.const 1
    i32.const 2
    local.get 0
    select
    i32.mul
    unreachable)
  (func (;9;) (type 3)
    i64.const 213
    call 2
    nop
    i32.const 1
    global.set 1)
  (func (;10;) (type 0) (param i32) (result i32)
    i64.const 212
    call 2
    local.get 0
    if  ;; label = @1
      i64.const 92
      call 2
      nop
    end
    i64.const 301
    call 2
    local.get 0
    return
    i64.const 92
    call 2
    unreachable)
  (table (;0;) 8 funcref)
  (global (;1;) (mut i32) (i32.const 0))
  (global (;2;) i64 (i64.const 42))
  (export "fib" (func 3))
  (export "loop_sum" (func 4))
  (export "switch" (func 5))
  (export "indirect" (func 6))
  (export "mem" (func 7))
  (export "nested" (func 8))
  (export "tail" (func 10))
  (start 9)
  (elem (;0;) (i32.const 1) func 3 1 4 3))

;; Every branching operator, nested blocks, br_table, locals, calls before and after the
;; renumbering point, call_indirect, exports/start/elements referencing functions.
(module
  (type $ii (func (param i32) (result i32)))
  (import "env" "log" (func $log (param i32)))
  (import "env" "mem" (memory 1 100))
  (import "env" "g" (global $g (mut i32)))
  (import "env" "twice" (func $twice (param i32) (result i32)))
  (table 8 funcref)
  (global $counter (mut i32) (i32.const 0))
  (global $k i64 (i64.const 42))
  (elem (i32.const 1) $fib $twice $loop_sum $fib)
  (func $fib (export "fib") (type $ii) (local i32 i32)
    local.get 0
    i32.const 2
    i32.lt_u
    if (result i32)
      local.get 0
    else
      local.get 0
      i32.const 1
      i32.sub
      call $fib
      local.get 0
      i32.const 2
      i32.sub
      call $fib
      i32.add
    end)
  (func $loop_sum (export "loop_sum") (param $n i32) (result i32) (local $acc i32)
    block $done
      loop $top
        local.get $n
        i32.eqz
        br_if $done
        local.get $acc
        local.get $n
        i32.add
        local.set $acc
        local.get $n
        i32.const 1
        i32.sub
        local.set $n
        br $top
      end
    end
    local.get $acc)
  (func $switch (export "switch") (param i32) (result i32)
    block $c
      block $b
        block $a
          local.get 0
          br_table $a $b $c $a
        end
        i32.const 10
        return
      end
      i32.const 20
      call $log
      i32.const 21
      return
    end
    i32.const 30)
  (func $indirect (export "indirect") (param i32 i32) (result i32)
    local.get 1
    local.get 0
    call_indirect (type $ii))
  (func $mem (export "mem") (param i32) (result i32)
    memory.size
    drop
    local.get 0
    memory.grow
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
    global.get $g
    i32.add
    global.set $counter
    global.get $counter)
  (func $nested (export "nested") (param i32) (result i32)
    (block (result i32)
      (block (result i32)
        (if (result i32) (local.get 0)
          (then (br 1 (i32.const 5)))
          (else (i32.const 6)))
        (br_if 1 (local.get 0))
        drop
        (i32.const 7)))
    (call $twice)
    (select (i32.const 1) (i32.const 2) (local.get 0))
    i32.mul
    unreachable)
  (func $start
    nop
    i32.const 1
    global.set $counter)
  (func $tail (export "tail") (param i32) (result i32)
    local.get 0
    if
      nop
    end
    local.get 0
    return
    unreachable)
  (start $start))

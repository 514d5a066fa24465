;; Reference types: ref.func, declared/passive/expression element segments, table.get,
;; typed select, funcref globals. The reference throws on ref.func.
(module
  (import "env" "h" (func $h (result i32)))
  (type $r (func (result i32)))
  (table $t 4 funcref)
  (table $t2 2 funcref)
  (global $gf funcref (ref.func $a))
  (elem declare func $b)
  (elem $p funcref (ref.func $a) (ref.null func) (ref.func $h))
  (elem (table $t2) (i32.const 0) func $b $a)
  (func $a (result i32) i32.const 1)
  (func $b (result i32) i32.const 2)
  (func (export "f") (param i32) (result i32)
    i32.const 0
    i32.const 0
    i32.const 3
    table.init $t $p
    ref.func $b
    drop
    local.get 0
    table.get $t
    drop
    i32.const 1
    call_indirect $t2 (type $r)
    i32.const 2
    local.get 0
    select (result i32)))

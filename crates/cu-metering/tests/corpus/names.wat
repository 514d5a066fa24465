;; Debug names: the package copies the name section unchanged (stale by one index).
(module $named
  (import "env" "ext" (func $ext (param i32) (result i32)))
  (func $first (export "first") (param $x i32) (result i32) (local $tmp i32)
    local.get $x
    call $second
    local.set $tmp
    local.get $tmp
    call $ext)
  (func $second (param $y i32) (result i32)
    block $lbl
      local.get $y
      br_if $lbl
    end
    local.get $y))

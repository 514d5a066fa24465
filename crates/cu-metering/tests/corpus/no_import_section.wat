;; No import section: the package creates one right before the function section.
(module
  (func $f (export "f") (result i32) i32.const 1 call $g)
  (func $g (param i32) (result i32) local.get 0 i32.const 2 i32.mul)
  (func $init nop)
  (start $init))

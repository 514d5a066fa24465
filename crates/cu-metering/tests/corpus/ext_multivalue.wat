;; Multi-value results: the reference reads only one result type and desynchronises.
(module
  (func $pair (param i32) (result i32 i32)
    local.get 0
    local.get 0
    i32.const 1
    i32.add)
  (func (export "sum") (param i32) (result i32)
    local.get 0
    call $pair
    i32.add))

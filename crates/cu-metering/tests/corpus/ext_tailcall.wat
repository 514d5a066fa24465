;; Tail calls (return_call): reference throws; extended mode renumbers the callee.
(module
  (func $even (export "even") (param i32) (result i32)
    local.get 0
    i32.eqz
    if (result i32)
      i32.const 1
    else
      local.get 0
      i32.const 1
      i32.sub
      return_call $odd
    end)
  (func $odd (param i32) (result i32)
    local.get 0
    i32.eqz
    if (result i32)
      i32.const 0
    else
      local.get 0
      i32.const 1
      i32.sub
      return_call $even
    end))

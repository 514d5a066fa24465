;; call_indirect through table 1 (one-byte table index): the reference round-trips it.
(module
  (type $v (func (result i32)))
  (table $t0 1 funcref)
  (table $t1 1 funcref)
  (func (export "f") (result i32)
    i32.const 0
    call_indirect $t1 (type $v)))

;; Bulk memory, passive data, data.drop, saturating truncation (0xfc prefix): reference throws.
(module
  (memory 1)
  (data $d "abcdefgh")
  (data (i32.const 64) "zz")
  (func (export "copy") (param i32) (result i32)
    i32.const 0
    i32.const 0
    i32.const 8
    memory.init $d
    data.drop $d
    local.get 0
    i32.const 0
    i32.const 8
    memory.copy
    local.get 0
    i32.const 0
    i32.const 4
    memory.fill
    f32.const 1e30
    i32.trunc_sat_f32_s
    local.get 0
    i32.load8_u
    i32.add))

;; A block typed by a type index: the reference writes block type 0x00 instead.
(module
  (type $t0 (func))
  (type $bt (func (param i32) (result i32)))
  (func (export "f") (param i32) (result i32)
    local.get 0
    block (type $bt)
      i32.const 3
      i32.add
    end))

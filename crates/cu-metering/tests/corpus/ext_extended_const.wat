;; A global initialiser with more than one operator: the reference keeps only the first.
(module
  (global $g i32 (i32.add (i32.const 40) (i32.const 2)))
  (func (export "f") (result i32) global.get $g))

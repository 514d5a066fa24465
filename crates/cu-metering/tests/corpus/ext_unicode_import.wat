;; Non-ASCII import names: the reference writes their UTF-16 length and corrupts the section.
(module
  (import "env" "caf\u{e9}" (func $c (param i32)))
  (func (export "f") i32.const 1 call $c))

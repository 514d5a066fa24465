;; Already imports metering.usegas: the package throws "importing metering function is not allowed".
(module
  (import "metering" "usegas" (func $usegas (param i32)))
  (func (export "f") i32.const 92 call $usegas nop))

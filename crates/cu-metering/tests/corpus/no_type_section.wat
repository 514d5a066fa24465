;; No type and no import section: both are created before the memory section.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "hi"))

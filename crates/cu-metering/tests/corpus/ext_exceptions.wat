;; Exception handling (tag section, throw): the reference does not know section 13.
(module
  (tag $e (param i32))
  (func (export "f") (param i32)
    local.get 0
    throw $e))

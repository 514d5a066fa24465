;; Only a custom section: nothing is created either.
(module (@custom "hello" "world"))

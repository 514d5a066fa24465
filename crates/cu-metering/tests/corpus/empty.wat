;; No sections at all: the package creates nothing (no later section to insert before).
(module)

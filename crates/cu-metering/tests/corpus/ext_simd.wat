;; SIMD: the reference toolkit throws on the 0xfd prefix. Extended mode: DEFAULT cost 0.
(module
  (memory 1)
  (func (export "dot") (param i32) (result i32) (local v128)
    local.get 0
    v128.load
    local.get 0
    v128.load offset=16
    i32x4.add
    local.tee 1
    i32x4.extract_lane 0
    local.get 1
    i32x4.extract_lane 3
    i32.add
    v128.const i32x4 1 2 3 4
    i32x4.extract_lane 2
    i32.mul))

;; Output of @permaweb/wasm-metering 0.2.2 meterWASM for tests/corpus/numeric.wat (wasm2wat --no-debug-names).
(module
  (type (;0;) (func (param i32 i32) (result i32)))
  (type (;1;) (func (param i64 i64) (result i64)))
  (type (;2;) (func (param f32 f32) (result f32)))
  (type (;3;) (func (param f64 f64) (result f64)))
  (type (;4;) (func (param i32 i64 f32 f64) (result f64)))
  (type (;5;) (func (param i32)))
  (import "metering" "usegas" (func (;0;) (type 5)))
  (func (;1;) (type 0) (param i32 i32) (result i32)
    i32.const 155638
    call 0
    local.get 0
    i32.eqz
    drop
    local.get 0
    local.get 1
    i32.eq
    drop
    local.get 0
    local.get 1
    i32.ne
    drop
    local.get 0
    local.get 1
    i32.lt_s
    drop
    local.get 0
    local.get 1
    i32.lt_u
    drop
    local.get 0
    local.get 1
    i32.gt_s
    drop
    local.get 0
    local.get 1
    i32.gt_u
    drop
    local.get 0
    local.get 1
    i32.le_s
    drop
    local.get 0
    local.get 1
    i32.le_u
    drop
    local.get 0
    local.get 1
    i32.ge_s
    drop
    local.get 0
    local.get 1
    i32.ge_u
    drop
    local.get 0
    i32.clz
    drop
    local.get 0
    i32.ctz
    drop
    local.get 0
    i32.popcnt
    drop
    local.get 0
    local.get 1
    i32.add
    drop
    local.get 0
    local.get 1
    i32.sub
    drop
    local.get 0
    local.get 1
    i32.mul
    drop
    local.get 0
    i32.const 1
    i32.or
    local.get 1
    i32.const 1
    i32.or
    i32.div_s
    drop
    local.get 0
    local.get 1
    i32.const 1
    i32.or
    i32.div_u
    drop
    local.get 0
    i32.const 1
    i32.or
    i32.const 3
    i32.rem_s
    drop
    local.get 0
    i32.const 3
    i32.rem_u
    drop
    local.get 0
    local.get 1
    i32.and
    drop
    local.get 0
    local.get 1
    i32.or
    drop
    local.get 0
    local.get 1
    i32.xor
    drop
    local.get 0
    local.get 1
    i32.shl
    drop
    local.get 0
    local.get 1
    i32.shr_s
    drop
    local.get 0
    local.get 1
    i32.shr_u
    drop
    local.get 0
    local.get 1
    i32.rotl
    drop
    local.get 0
    local.get 1
    i32.rotr
    drop
    local.get 0
    i32.extend8_s
    drop
    local.get 0
    i32.extend16_s)
  (func (;2;) (type 1) (param i64 i64) (result i64)
    i32.const 155456
    call 0
    local.get 0
    i64.eqz
    drop
    local.get 0
    local.get 1
    i64.eq
    drop
    local.get 0
    local.get 1
    i64.ne
    drop
    local.get 0
    local.get 1
    i64.lt_s
    drop
    local.get 0
    local.get 1
    i64.lt_u
    drop
    local.get 0
    local.get 1
    i64.gt_s
    drop
    local.get 0
    local.get 1
    i64.gt_u
    drop
    local.get 0
    local.get 1
    i64.le_s
    drop
    local.get 0
    local.get 1
    i64.le_u
    drop
    local.get 0
    local.get 1
    i64.ge_s
    drop
    local.get 0
    local.get 1
    i64.ge_u
    drop
    local.get 0
    i64.clz
    drop
    local.get 0
    i64.ctz
    drop
    local.get 0
    i64.popcnt
    drop
    local.get 0
    local.get 1
    i64.add
    drop
    local.get 0
    local.get 1
    i64.sub
    drop
    local.get 0
    local.get 1
    i64.mul
    drop
    local.get 0
    i64.const 7
    i64.div_s
    drop
    local.get 0
    i64.const 7
    i64.div_u
    drop
    local.get 0
    i64.const 7
    i64.rem_s
    drop
    local.get 0
    i64.const 7
    i64.rem_u
    drop
    local.get 0
    local.get 1
    i64.and
    drop
    local.get 0
    local.get 1
    i64.or
    drop
    local.get 0
    local.get 1
    i64.xor
    drop
    local.get 0
    local.get 1
    i64.shl
    drop
    local.get 0
    local.get 1
    i64.shr_s
    drop
    local.get 0
    local.get 1
    i64.shr_u
    drop
    local.get 0
    local.get 1
    i64.rotl
    drop
    local.get 0
    local.get 1
    i64.rotr
    drop
    local.get 0
    i64.extend8_s
    drop
    local.get 0
    i64.extend16_s
    drop
    local.get 0
    i64.extend32_s)
  (func (;3;) (type 2) (param f32 f32) (result f32)
    i32.const 6556
    call 0
    local.get 0
    local.get 1
    f32.eq
    drop
    local.get 0
    local.get 1
    f32.ne
    drop
    local.get 0
    local.get 1
    f32.lt
    drop
    local.get 0
    local.get 1
    f32.gt
    drop
    local.get 0
    local.get 1
    f32.le
    drop
    local.get 0
    local.get 1
    f32.ge
    drop
    local.get 0
    f32.abs
    drop
    local.get 0
    f32.neg
    drop
    local.get 0
    f32.ceil
    drop
    local.get 0
    f32.floor
    drop
    local.get 0
    f32.trunc
    drop
    local.get 0
    f32.nearest
    drop
    local.get 0
    f32.sqrt
    drop
    local.get 0
    local.get 1
    f32.add
    drop
    local.get 0
    local.get 1
    f32.sub
    drop
    local.get 0
    local.get 1
    f32.mul
    drop
    local.get 0
    local.get 1
    f32.div
    drop
    local.get 0
    local.get 1
    f32.min
    drop
    local.get 0
    local.get 1
    f32.max
    drop
    local.get 0
    local.get 1
    f32.copysign)
  (func (;4;) (type 3) (param f64 f64) (result f64)
    i32.const 6556
    call 0
    local.get 0
    local.get 1
    f64.eq
    drop
    local.get 0
    local.get 1
    f64.ne
    drop
    local.get 0
    local.get 1
    f64.lt
    drop
    local.get 0
    local.get 1
    f64.gt
    drop
    local.get 0
    local.get 1
    f64.le
    drop
    local.get 0
    local.get 1
    f64.ge
    drop
    local.get 0
    f64.abs
    drop
    local.get 0
    f64.neg
    drop
    local.get 0
    f64.ceil
    drop
    local.get 0
    f64.floor
    drop
    local.get 0
    f64.trunc
    drop
    local.get 0
    f64.nearest
    drop
    local.get 0
    f64.sqrt
    drop
    local.get 0
    local.get 1
    f64.add
    drop
    local.get 0
    local.get 1
    f64.sub
    drop
    local.get 0
    local.get 1
    f64.mul
    drop
    local.get 0
    local.get 1
    f64.div
    drop
    local.get 0
    local.get 1
    f64.min
    drop
    local.get 0
    local.get 1
    f64.max
    drop
    local.get 0
    local.get 1
    f64.copysign)
  (func (;5;) (type 4) (param i32 i64 f32 f64) (result f64)
    i32.const 5743
    call 0
    local.get 1
    i32.wrap_i64
    drop
    f32.const 0x1.8p+0 (;=1.5;)
    i32.trunc_f32_s
    drop
    f32.const 0x1.8p+0 (;=1.5;)
    i32.trunc_f32_u
    drop
    f64.const 0x1.8p+0 (;=1.5;)
    i32.trunc_f64_s
    drop
    f64.const 0x1.8p+0 (;=1.5;)
    i32.trunc_f64_u
    drop
    local.get 0
    i64.extend_i32_s
    drop
    local.get 0
    i64.extend_i32_u
    drop
    f32.const 0x1.8p+0 (;=1.5;)
    i64.trunc_f32_s
    drop
    f32.const 0x1.8p+0 (;=1.5;)
    i64.trunc_f32_u
    drop
    f64.const 0x1.8p+0 (;=1.5;)
    i64.trunc_f64_s
    drop
    f64.const 0x1.8p+0 (;=1.5;)
    i64.trunc_f64_u
    drop
    local.get 0
    f32.convert_i32_s
    drop
    local.get 0
    f32.convert_i32_u
    drop
    local.get 1
    f32.convert_i64_s
    drop
    local.get 1
    f32.convert_i64_u
    drop
    local.get 3
    f32.demote_f64
    drop
    local.get 0
    f64.convert_i32_s
    drop
    local.get 0
    f64.convert_i32_u
    drop
    local.get 1
    f64.convert_i64_s
    drop
    local.get 1
    f64.convert_i64_u
    drop
    local.get 2
    f64.promote_f32
    drop
    local.get 2
    i32.reinterpret_f32
    drop
    local.get 3
    i64.reinterpret_f64
    drop
    local.get 0
    f32.reinterpret_i32
    drop
    local.get 1
    f64.reinterpret_i64
    drop
    i32.const -2147483648
    drop
    i64.const -9223372036854775808
    drop
    f32.const nan:0x200000 (;=nan;)
    drop
    f64.const -0x0p+0 (;=-0;)
    drop
    local.get 3)
  (export "i32ops" (func 1))
  (export "i64ops" (func 2))
  (export "f32ops" (func 3))
  (export "f64ops" (func 4))
  (export "conv" (func 5)))

;; The cost of every MVP numeric operator plus sign extension (f32.div and comparisons
;; like f32.lt cost DEFAULT = 0 in the reference because only the short name is looked up).
(module
  (func (export "i32ops") (param i32 i32) (result i32)
    local.get 0 i32.eqz drop
    local.get 0 local.get 1 i32.eq drop
    local.get 0 local.get 1 i32.ne drop
    local.get 0 local.get 1 i32.lt_s drop
    local.get 0 local.get 1 i32.lt_u drop
    local.get 0 local.get 1 i32.gt_s drop
    local.get 0 local.get 1 i32.gt_u drop
    local.get 0 local.get 1 i32.le_s drop
    local.get 0 local.get 1 i32.le_u drop
    local.get 0 local.get 1 i32.ge_s drop
    local.get 0 local.get 1 i32.ge_u drop
    local.get 0 i32.clz drop
    local.get 0 i32.ctz drop
    local.get 0 i32.popcnt drop
    local.get 0 local.get 1 i32.add drop
    local.get 0 local.get 1 i32.sub drop
    local.get 0 local.get 1 i32.mul drop
    local.get 0 i32.const 1 i32.or local.get 1 i32.const 1 i32.or i32.div_s drop
    local.get 0 local.get 1 i32.const 1 i32.or i32.div_u drop
    local.get 0 i32.const 1 i32.or i32.const 3 i32.rem_s drop
    local.get 0 i32.const 3 i32.rem_u drop
    local.get 0 local.get 1 i32.and drop
    local.get 0 local.get 1 i32.or drop
    local.get 0 local.get 1 i32.xor drop
    local.get 0 local.get 1 i32.shl drop
    local.get 0 local.get 1 i32.shr_s drop
    local.get 0 local.get 1 i32.shr_u drop
    local.get 0 local.get 1 i32.rotl drop
    local.get 0 local.get 1 i32.rotr drop
    local.get 0 i32.extend8_s drop
    local.get 0 i32.extend16_s)
  (func (export "i64ops") (param i64 i64) (result i64)
    local.get 0 i64.eqz drop
    local.get 0 local.get 1 i64.eq drop
    local.get 0 local.get 1 i64.ne drop
    local.get 0 local.get 1 i64.lt_s drop
    local.get 0 local.get 1 i64.lt_u drop
    local.get 0 local.get 1 i64.gt_s drop
    local.get 0 local.get 1 i64.gt_u drop
    local.get 0 local.get 1 i64.le_s drop
    local.get 0 local.get 1 i64.le_u drop
    local.get 0 local.get 1 i64.ge_s drop
    local.get 0 local.get 1 i64.ge_u drop
    local.get 0 i64.clz drop
    local.get 0 i64.ctz drop
    local.get 0 i64.popcnt drop
    local.get 0 local.get 1 i64.add drop
    local.get 0 local.get 1 i64.sub drop
    local.get 0 local.get 1 i64.mul drop
    local.get 0 i64.const 7 i64.div_s drop
    local.get 0 i64.const 7 i64.div_u drop
    local.get 0 i64.const 7 i64.rem_s drop
    local.get 0 i64.const 7 i64.rem_u drop
    local.get 0 local.get 1 i64.and drop
    local.get 0 local.get 1 i64.or drop
    local.get 0 local.get 1 i64.xor drop
    local.get 0 local.get 1 i64.shl drop
    local.get 0 local.get 1 i64.shr_s drop
    local.get 0 local.get 1 i64.shr_u drop
    local.get 0 local.get 1 i64.rotl drop
    local.get 0 local.get 1 i64.rotr drop
    local.get 0 i64.extend8_s drop
    local.get 0 i64.extend16_s drop
    local.get 0 i64.extend32_s)
  (func (export "f32ops") (param f32 f32) (result f32)
    local.get 0 local.get 1 f32.eq drop
    local.get 0 local.get 1 f32.ne drop
    local.get 0 local.get 1 f32.lt drop
    local.get 0 local.get 1 f32.gt drop
    local.get 0 local.get 1 f32.le drop
    local.get 0 local.get 1 f32.ge drop
    local.get 0 f32.abs drop
    local.get 0 f32.neg drop
    local.get 0 f32.ceil drop
    local.get 0 f32.floor drop
    local.get 0 f32.trunc drop
    local.get 0 f32.nearest drop
    local.get 0 f32.sqrt drop
    local.get 0 local.get 1 f32.add drop
    local.get 0 local.get 1 f32.sub drop
    local.get 0 local.get 1 f32.mul drop
    local.get 0 local.get 1 f32.div drop
    local.get 0 local.get 1 f32.min drop
    local.get 0 local.get 1 f32.max drop
    local.get 0 local.get 1 f32.copysign)
  (func (export "f64ops") (param f64 f64) (result f64)
    local.get 0 local.get 1 f64.eq drop
    local.get 0 local.get 1 f64.ne drop
    local.get 0 local.get 1 f64.lt drop
    local.get 0 local.get 1 f64.gt drop
    local.get 0 local.get 1 f64.le drop
    local.get 0 local.get 1 f64.ge drop
    local.get 0 f64.abs drop
    local.get 0 f64.neg drop
    local.get 0 f64.ceil drop
    local.get 0 f64.floor drop
    local.get 0 f64.trunc drop
    local.get 0 f64.nearest drop
    local.get 0 f64.sqrt drop
    local.get 0 local.get 1 f64.add drop
    local.get 0 local.get 1 f64.sub drop
    local.get 0 local.get 1 f64.mul drop
    local.get 0 local.get 1 f64.div drop
    local.get 0 local.get 1 f64.min drop
    local.get 0 local.get 1 f64.max drop
    local.get 0 local.get 1 f64.copysign)
  (func (export "conv") (param i32 i64 f32 f64) (result f64)
    local.get 1 i32.wrap_i64 drop
    f32.const 1.5 i32.trunc_f32_s drop
    f32.const 1.5 i32.trunc_f32_u drop
    f64.const 1.5 i32.trunc_f64_s drop
    f64.const 1.5 i32.trunc_f64_u drop
    local.get 0 i64.extend_i32_s drop
    local.get 0 i64.extend_i32_u drop
    f32.const 1.5 i64.trunc_f32_s drop
    f32.const 1.5 i64.trunc_f32_u drop
    f64.const 1.5 i64.trunc_f64_s drop
    f64.const 1.5 i64.trunc_f64_u drop
    local.get 0 f32.convert_i32_s drop
    local.get 0 f32.convert_i32_u drop
    local.get 1 f32.convert_i64_s drop
    local.get 1 f32.convert_i64_u drop
    local.get 3 f32.demote_f64 drop
    local.get 0 f64.convert_i32_s drop
    local.get 0 f64.convert_i32_u drop
    local.get 1 f64.convert_i64_s drop
    local.get 1 f64.convert_i64_u drop
    local.get 2 f64.promote_f32 drop
    local.get 2 i32.reinterpret_f32 drop
    local.get 3 i64.reinterpret_f64 drop
    local.get 0 f32.reinterpret_i32 drop
    local.get 1 f64.reinterpret_i64 drop
    i32.const -2147483648 drop
    i64.const -9223372036854775808 drop
    f32.const nan:0x200000 drop
    f64.const -0 drop
    local.get 3))

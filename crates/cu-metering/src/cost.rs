//! The default cost table of `@permaweb/wasm-metering` 0.2.2 and the opcode names of
//! `@permaweb/wasm-json-toolkit` 0.2.9, which together decide what every instruction costs.
//!
//! The package looks costs up by the toolkit's *short* operator name: `i32.add` is parsed into
//! `{return_type: "i32", name: "add"}` and only `add` is looked up in the `code` table. Hence
//! `f32.add` costs the same 45 as `i32.add`, while `f32.div` (`div` is not in the table) and every
//! conversion such as `i32.wrap/i64` cost the table's `DEFAULT`, which is absent and therefore 0.
//!
//! The toolkit only knows the single-byte MVP opcodes listed in [`REFERENCE_OPCODES`] (plus the
//! sign-extension operators). Opcodes outside that list make the reference throw while parsing;
//! in [`crate::Compat::Extended`] mode they are metered with the `DEFAULT` cost (0) and never end
//! a segment.

use std::sync::LazyLock;

/// Cost added to a segment for the metering statement itself: `i32.const` (1) + `call` (90).
///
/// The package computes it by metering the statement `<type>.const 0 call 0` with the table.
pub const METERING_OVERHEAD: u64 = 91;

/// The `code.code` part of `defaultCostTable.json`: short operator name → cost.
///
/// Names not listed here cost `DEFAULT`, which the table does not define, i.e. 0. (`then` is in
/// the table but no operator has that name.)
pub const CODE_COST_TABLE: &[(&str, u32)] = &[
    ("get_local", 120),
    ("set_local", 120),
    ("tee_local", 120),
    ("get_global", 120),
    ("set_global", 120),
    ("load8_s", 120),
    ("load8_u", 120),
    ("load16_s", 120),
    ("load16_u", 120),
    ("load32_s", 120),
    ("load32_u", 120),
    ("load", 120),
    ("store8", 120),
    ("store16", 120),
    ("store32", 120),
    ("store", 120),
    ("grow_memory", 10000),
    ("current_memory", 100),
    ("nop", 1),
    ("block", 1),
    ("loop", 1),
    ("if", 1),
    ("then", 90),
    ("else", 90),
    ("br", 90),
    ("br_if", 90),
    ("br_table", 120),
    ("return", 90),
    ("call", 90),
    ("call_indirect", 10000),
    ("const", 1),
    ("add", 45),
    ("sub", 45),
    ("mul", 45),
    ("div_s", 36000),
    ("div_u", 36000),
    ("rem_s", 36000),
    ("rem_u", 36000),
    ("and", 45),
    ("or", 45),
    ("xor", 45),
    ("shl", 67),
    ("shr_u", 67),
    ("shr_s", 67),
    ("rotl", 90),
    ("rotr", 90),
    ("eq", 45),
    ("eqz", 45),
    ("ne", 45),
    ("lt_s", 45),
    ("lt_u", 45),
    ("le_s", 45),
    ("le_u", 45),
    ("gt_s", 45),
    ("gt_u", 45),
    ("ge_s", 45),
    ("ge_u", 45),
    ("clz", 45),
    ("ctz", 45),
    ("popcnt", 45),
    ("drop", 120),
    ("select", 120),
    ("unreachable", 1),
];

/// Short operator names after which the package starts a new metering segment.
pub const BRANCHING_OPS: &[&str] = &[
    "grow_memory",
    "end",
    "br",
    "br_table",
    "br_if",
    "if",
    "else",
    "return",
    "loop",
];

/// Every opcode `@permaweb/wasm-json-toolkit` 0.2.9 can parse (`wasm2json.js` `OPCODES`), with
/// its full toolkit name. Any other opcode byte (including the `0xfc`/`0xfd` prefixes of bulk
/// memory, saturating truncation and SIMD) makes the reference throw.
pub const REFERENCE_OPCODES: &[(u8, &str)] = &[
    (0x00, "unreachable"),
    (0x01, "nop"),
    (0x02, "block"),
    (0x03, "loop"),
    (0x04, "if"),
    (0x05, "else"),
    (0x0b, "end"),
    (0x0c, "br"),
    (0x0d, "br_if"),
    (0x0e, "br_table"),
    (0x0f, "return"),
    (0x10, "call"),
    (0x11, "call_indirect"),
    (0x1a, "drop"),
    (0x1b, "select"),
    (0x20, "get_local"),
    (0x21, "set_local"),
    (0x22, "tee_local"),
    (0x23, "get_global"),
    (0x24, "set_global"),
    (0x28, "i32.load"),
    (0x29, "i64.load"),
    (0x2a, "f32.load"),
    (0x2b, "f64.load"),
    (0x2c, "i32.load8_s"),
    (0x2d, "i32.load8_u"),
    (0x2e, "i32.load16_s"),
    (0x2f, "i32.load16_u"),
    (0x30, "i64.load8_s"),
    (0x31, "i64.load8_u"),
    (0x32, "i64.load16_s"),
    (0x33, "i64.load16_u"),
    (0x34, "i64.load32_s"),
    (0x35, "i64.load32_u"),
    (0x36, "i32.store"),
    (0x37, "i64.store"),
    (0x38, "f32.store"),
    (0x39, "f64.store"),
    (0x3a, "i32.store8"),
    (0x3b, "i32.store16"),
    (0x3c, "i64.store8"),
    (0x3d, "i64.store16"),
    (0x3e, "i64.store32"),
    (0x3f, "current_memory"),
    (0x40, "grow_memory"),
    (0x41, "i32.const"),
    (0x42, "i64.const"),
    (0x43, "f32.const"),
    (0x44, "f64.const"),
    (0x45, "i32.eqz"),
    (0x46, "i32.eq"),
    (0x47, "i32.ne"),
    (0x48, "i32.lt_s"),
    (0x49, "i32.lt_u"),
    (0x4a, "i32.gt_s"),
    (0x4b, "i32.gt_u"),
    (0x4c, "i32.le_s"),
    (0x4d, "i32.le_u"),
    (0x4e, "i32.ge_s"),
    (0x4f, "i32.ge_u"),
    (0x50, "i64.eqz"),
    (0x51, "i64.eq"),
    (0x52, "i64.ne"),
    (0x53, "i64.lt_s"),
    (0x54, "i64.lt_u"),
    (0x55, "i64.gt_s"),
    (0x56, "i64.gt_u"),
    (0x57, "i64.le_s"),
    (0x58, "i64.le_u"),
    (0x59, "i64.ge_s"),
    (0x5a, "i64.ge_u"),
    (0x5b, "f32.eq"),
    (0x5c, "f32.ne"),
    (0x5d, "f32.lt"),
    (0x5e, "f32.gt"),
    (0x5f, "f32.le"),
    (0x60, "f32.ge"),
    (0x61, "f64.eq"),
    (0x62, "f64.ne"),
    (0x63, "f64.lt"),
    (0x64, "f64.gt"),
    (0x65, "f64.le"),
    (0x66, "f64.ge"),
    (0x67, "i32.clz"),
    (0x68, "i32.ctz"),
    (0x69, "i32.popcnt"),
    (0x6a, "i32.add"),
    (0x6b, "i32.sub"),
    (0x6c, "i32.mul"),
    (0x6d, "i32.div_s"),
    (0x6e, "i32.div_u"),
    (0x6f, "i32.rem_s"),
    (0x70, "i32.rem_u"),
    (0x71, "i32.and"),
    (0x72, "i32.or"),
    (0x73, "i32.xor"),
    (0x74, "i32.shl"),
    (0x75, "i32.shr_s"),
    (0x76, "i32.shr_u"),
    (0x77, "i32.rotl"),
    (0x78, "i32.rotr"),
    (0x79, "i64.clz"),
    (0x7a, "i64.ctz"),
    (0x7b, "i64.popcnt"),
    (0x7c, "i64.add"),
    (0x7d, "i64.sub"),
    (0x7e, "i64.mul"),
    (0x7f, "i64.div_s"),
    (0x80, "i64.div_u"),
    (0x81, "i64.rem_s"),
    (0x82, "i64.rem_u"),
    (0x83, "i64.and"),
    (0x84, "i64.or"),
    (0x85, "i64.xor"),
    (0x86, "i64.shl"),
    (0x87, "i64.shr_s"),
    (0x88, "i64.shr_u"),
    (0x89, "i64.rotl"),
    (0x8a, "i64.rotr"),
    (0x8b, "f32.abs"),
    (0x8c, "f32.neg"),
    (0x8d, "f32.ceil"),
    (0x8e, "f32.floor"),
    (0x8f, "f32.trunc"),
    (0x90, "f32.nearest"),
    (0x91, "f32.sqrt"),
    (0x92, "f32.add"),
    (0x93, "f32.sub"),
    (0x94, "f32.mul"),
    (0x95, "f32.div"),
    (0x96, "f32.min"),
    (0x97, "f32.max"),
    (0x98, "f32.copysign"),
    (0x99, "f64.abs"),
    (0x9a, "f64.neg"),
    (0x9b, "f64.ceil"),
    (0x9c, "f64.floor"),
    (0x9d, "f64.trunc"),
    (0x9e, "f64.nearest"),
    (0x9f, "f64.sqrt"),
    (0xa0, "f64.add"),
    (0xa1, "f64.sub"),
    (0xa2, "f64.mul"),
    (0xa3, "f64.div"),
    (0xa4, "f64.min"),
    (0xa5, "f64.max"),
    (0xa6, "f64.copysign"),
    (0xa7, "i32.wrap/i64"),
    (0xa8, "i32.trunc_s/f32"),
    (0xa9, "i32.trunc_u/f32"),
    (0xaa, "i32.trunc_s/f64"),
    (0xab, "i32.trunc_u/f64"),
    (0xac, "i64.extend_s/i32"),
    (0xad, "i64.extend_u/i32"),
    (0xae, "i64.trunc_s/f32"),
    (0xaf, "i64.trunc_u/f32"),
    (0xb0, "i64.trunc_s/f64"),
    (0xb1, "i64.trunc_u/f64"),
    (0xb2, "f32.convert_s/i32"),
    (0xb3, "f32.convert_u/i32"),
    (0xb4, "f32.convert_s/i64"),
    (0xb5, "f32.convert_u/i64"),
    (0xb6, "f32.demote/f64"),
    (0xb7, "f64.convert_s/i32"),
    (0xb8, "f64.convert_u/i32"),
    (0xb9, "f64.convert_s/i64"),
    (0xba, "f64.convert_u/i64"),
    (0xbb, "f64.promote/f32"),
    (0xbc, "i32.reinterpret/f32"),
    (0xbd, "i64.reinterpret/f64"),
    (0xbe, "f32.reinterpret/i32"),
    (0xbf, "f64.reinterpret/i64"),
    (0xc0, "i32.extend8_s"),
    (0xc1, "i32.extend16_s"),
    (0xc2, "i64.extend8_s"),
    (0xc3, "i64.extend16_s"),
    (0xc4, "i64.extend32_s"),
];

/// What the package does with one opcode byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpInfo {
    /// Gas the op contributes to its segment.
    pub cost: u32,
    /// Whether the op ends a metering segment.
    pub branching: bool,
    /// Whether the reference toolkit can parse this opcode at all.
    pub known: bool,
}

/// The toolkit's short name: the part after the first `.` (`i32.wrap/i64` → `wrap/i64`),
/// exactly like `fullName.split('.')` in `wasm2json.js` `parseOp`.
pub fn short_name(full: &str) -> &str {
    match full.split_once('.') {
        Some((_, name)) => name,
        None => full,
    }
}

/// Cost of a short operator name under the default table (`getCost(op.name, costTable.code)`).
pub fn name_cost(short: &str) -> u32 {
    CODE_COST_TABLE
        .iter()
        .find(|(n, _)| *n == short)
        .map_or(0, |(_, c)| *c)
}

static TABLE: LazyLock<[OpInfo; 256]> = LazyLock::new(|| {
    let mut table = [OpInfo::default(); 256];
    for &(byte, full) in REFERENCE_OPCODES {
        let short = short_name(full);
        table[usize::from(byte)] = OpInfo {
            cost: name_cost(short),
            branching: BRANCHING_OPS.contains(&short),
            known: true,
        };
    }
    table
});

/// Metering facts for the operator whose encoding starts with `opcode`.
///
/// Multi-byte opcodes (prefix bytes `0xfb`..`0xfe`) and every single-byte opcode the reference
/// does not know yield `OpInfo { cost: 0, branching: false, known: false }` (the `DEFAULT` cost).
pub fn opcode_info(opcode: u8) -> OpInfo {
    TABLE[usize::from(opcode)]
}

/// The reference toolkit's full name for an opcode byte, if it knows it.
pub fn reference_name(opcode: u8) -> Option<&'static str> {
    REFERENCE_OPCODES
        .iter()
        .find(|(b, _)| *b == opcode)
        .map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_costs_follow_short_names() {
        assert_eq!(opcode_info(0x6a).cost, 45); // i32.add
        assert_eq!(opcode_info(0x92).cost, 45); // f32.add: `add`
        assert_eq!(opcode_info(0x95).cost, 0); // f32.div: `div` not in the table
        assert_eq!(opcode_info(0x6d).cost, 36000); // i32.div_s
        assert_eq!(opcode_info(0x5d).cost, 0); // f32.lt
        assert_eq!(opcode_info(0x5b).cost, 45); // f32.eq
        assert_eq!(opcode_info(0xa7).cost, 0); // i32.wrap/i64
        assert_eq!(opcode_info(0x35).cost, 120); // i64.load32_u
        assert_eq!(opcode_info(0x3f).cost, 100); // memory.size
        assert_eq!(opcode_info(0x40).cost, 10000); // memory.grow
        assert!(opcode_info(0x40).branching);
        assert!(opcode_info(0x0b).branching);
        assert_eq!(opcode_info(0x0b).cost, 0); // end
        assert!(!opcode_info(0x02).branching); // block
        assert!(!opcode_info(0x10).branching); // call
        assert_eq!(opcode_info(0x11).cost, 10000);
        assert_eq!(opcode_info(0x44).cost, 1); // f64.const
    }

    #[test]
    fn unknown_opcodes_cost_default() {
        for b in [0x06u8, 0x12, 0x1c, 0x25, 0xc5, 0xd0, 0xd2, 0xfc, 0xfd, 0xfe] {
            let info = opcode_info(b);
            assert_eq!(info, OpInfo::default(), "opcode {b:#x}");
        }
    }

    #[test]
    fn table_size_matches_toolkit() {
        assert_eq!(REFERENCE_OPCODES.len(), 177);
        let known = (0..=255u8).filter(|b| opcode_info(*b).known).count();
        assert_eq!(known, REFERENCE_OPCODES.len());
    }

    #[test]
    fn overhead_is_metered_statement() {
        assert_eq!(
            u64::from(name_cost("const") + name_cost("call")),
            METERING_OVERHEAD
        );
    }
}

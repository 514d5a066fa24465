//! Node-free tests: fixtures produced by the reference package (`tests/expected`), hand-computed
//! costs, renumbering in every place a function index can occur, and the error cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{assert_same, corpus, summarize, validate};
use cu_metering::{
    Compat, MeterError, MeterOptions, MeterType, check_reference_compat, is_metered, meter, meter_with,
};
use wasmparser::{KnownCustom, Name, Parser, Payload};

fn corpus_module(name: &str) -> Vec<u8> {
    corpus()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no corpus module {name}"))
        .1
}

fn strict(ty: MeterType) -> MeterOptions {
    MeterOptions {
        compat: Compat::Reference,
        ..MeterOptions::new(ty)
    }
}

/// Operators of body `index` of a module.
fn body_ops(wasm: &[u8], index: usize) -> Vec<String> {
    summarize(wasm).code[index].ops.clone()
}

#[test]
fn corpus_modules_are_valid() {
    let all = corpus();
    assert!(all.len() >= 19);
    for (name, bytes) in all {
        validate(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn matches_reference_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected");
    let mut compared = 0;
    let mut fixtures = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".wat") else {
            continue;
        };
        let (name, ty) = stem.rsplit_once('.').unwrap();
        let ty = match ty {
            "i32" => MeterType::I32,
            "i64" => MeterType::I64,
            other => panic!("bad fixture type {other}"),
        };
        let expected = wat::parse_file(&path).unwrap();
        let ours = meter(&corpus_module(name), ty).unwrap();
        validate(&ours).unwrap();
        compared += assert_same(&summarize(&ours), &summarize(&expected), &file, false);
        // The reference mode agrees wherever the reference works.
        assert_eq!(
            meter_with(&corpus_module(name), &strict(ty)).unwrap(),
            ours,
            "{file}"
        );
        fixtures += 1;
    }
    assert!(fixtures >= 12, "only {fixtures} fixtures");
    assert!(compared > 20, "only {compared} functions compared");
}

#[test]
fn hand_computed_costs() {
    let m = meter(&corpus_module("control"), MeterType::I32).unwrap();
    // fib: local.get(120) i32.const(1) i32.lt_u(45) if(1) = 167 (+91)
    let fib = body_ops(&m, 0);
    assert_eq!(fib[0], "I32Const { value: 258 }");
    assert_eq!(fib[1], "Call { function_index: 2 }"); // usegas = number of imported funcs
    // then-branch: local.get(120) else(90) = 210 (+91)
    assert_eq!(fib[6], "I32Const { value: 301 }");
    // Recursive calls to fib (defined index 2) are shifted to 3.
    assert!(fib.contains(&"Call { function_index: 3 }".to_string()));
    // Call to the imported `twice` (index 1) is unchanged in `nested`.
    let nested = body_ops(&m, 5);
    assert!(nested.contains(&"Call { function_index: 1 }".to_string()));

    // Zero-cost segments get no metering statement: `start` ends with `end` only.
    let s = summarize(&m);
    assert_eq!(s.start, Some(9)); // $start was 8
    assert_eq!(s.exports.iter().find(|e| e.0 == "fib").map(|e| e.2), Some(3));
    assert_eq!(
        s.elements,
        vec!["active table 0 at I32Const { value: 1 };End; funcs 3 1 4 3"]
    );
}

#[test]
fn memory64_uses_i64_constants() {
    let m = meter(&corpus_module("memory64"), MeterType::I64).unwrap();
    validate(&m).unwrap();
    let load = body_ops(&m, 0);
    // local.get(120) i32.load(120) local.get(120) i64.const(1) i64.add(45) i64.load8_u(120)
    // i32.wrap_i64(0) i32.add(45) end(0) = 571 (+91)
    assert_eq!(load[0], "I64Const { value: 662 }");
    assert_eq!(load[1], "Call { function_index: 1 }");
    // memory.grow ends a segment: size(100) const(1) add(45) drop(120) local.get(120) grow(10000)
    let grow = body_ops(&m, 1);
    assert_eq!(grow[0], "I64Const { value: 10477 }");
    let grow_at = grow.iter().position(|o| o.starts_with("MemoryGrow")).unwrap();
    // i64.const(1) i64.eq(45) if(1) = 47 (+91)
    assert_eq!(grow[grow_at + 1], "I64Const { value: 138 }");
    let s = summarize(&m);
    assert_eq!(s.imports[1].0, "metering");
    assert_eq!(s.imports[1].2, "Func(4)");
    assert_eq!(s.types.len(), 5);
    assert!(s.types[4].contains("I64"));
}

#[test]
fn unknown_operators_cost_default_zero() {
    let m = meter(&corpus_module("ext_simd"), MeterType::I32).unwrap();
    validate(&m).unwrap();
    // Only local.get/tee (4 x 120) and i32.add/i32.mul (2 x 45) cost anything: 570 (+91).
    let dot = body_ops(&m, 0);
    assert_eq!(dot[0], "I32Const { value: 661 }");
    assert_eq!(dot[1], "Call { function_index: 0 }");
    assert_eq!(
        dot.iter().filter(|o| o.starts_with("Call")).count(),
        1,
        "SIMD ops must not split segments"
    );

    let bulk = meter(&corpus_module("ext_bulk"), MeterType::I32).unwrap();
    validate(&bulk).unwrap();
    let copy = body_ops(&bulk, 0);
    // i32.const x7 (7) local.get x3 (360) f32.const (1) i32.load8_u (120) i32.add (45) = 533
    assert_eq!(copy[0], "I32Const { value: 624 }");
}

#[test]
fn extended_mode_renumbers_every_function_reference() {
    let m = meter(&corpus_module("ext_refs"), MeterType::I32).unwrap();
    validate(&m).unwrap();
    let s = summarize(&m);
    // Imports: env.h (0), metering.usegas (1); defined $a 1 -> 2, $b 2 -> 3.
    assert_eq!(
        s.globals,
        vec![
            "GlobalType { content_type: Ref(funcref), mutable: false, shared: false } RefFunc { function_index: 2 };End;"
        ]
    );
    assert_eq!(s.elements[0], "declared funcs 3");
    assert_eq!(
        s.elements[1],
        "passive exprs funcref [RefFunc { function_index: 2 };End;] [RefNull { hty: Abstract { shared: false, ty: Func } };End;] [RefFunc { function_index: 0 };End;]"
    );
    assert_eq!(
        s.elements[2],
        "active table 1 at I32Const { value: 0 };End; funcs 3 2"
    );
    assert!(body_ops(&m, 2).contains(&"RefFunc { function_index: 3 }".to_string()));

    let t = meter(&corpus_module("ext_tailcall"), MeterType::I32).unwrap();
    validate(&t).unwrap();
    assert!(body_ops(&t, 0).contains(&"ReturnCall { function_index: 2 }".to_string()));
    assert!(body_ops(&t, 1).contains(&"ReturnCall { function_index: 1 }".to_string()));
}

#[test]
fn reference_mode_rejects_what_the_package_cannot_handle() {
    for (name, bytes) in corpus() {
        let strict_result = check_reference_compat(&bytes);
        if name.starts_with("ext_") {
            assert!(
                matches!(strict_result, Err(MeterError::Unsupported { .. })),
                "{name}: {strict_result:?}"
            );
            let ours = meter(&bytes, MeterType::I32).unwrap();
            validate(&ours).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name == "pre_metered" {
            assert!(matches!(strict_result, Err(MeterError::AlreadyMetered)));
        } else {
            strict_result.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn pre_metered_modules_are_refused() {
    let pre = corpus_module("pre_metered");
    assert!(is_metered(&pre));
    for ty in [MeterType::I32, MeterType::I64] {
        assert!(matches!(meter(&pre, ty), Err(MeterError::AlreadyMetered)));
    }
    let control = corpus_module("control");
    assert!(!is_metered(&control));
    let metered = meter(&control, MeterType::I32).unwrap();
    assert!(is_metered(&metered));
    assert!(matches!(
        meter(&metered, MeterType::I32),
        Err(MeterError::AlreadyMetered)
    ));
    assert!(!is_metered(b"not wasm"));
}

#[test]
fn deterministic_output() {
    for (name, bytes) in corpus() {
        if name == "pre_metered" {
            continue;
        }
        for ty in [MeterType::I32, MeterType::I64] {
            let a = meter(&bytes, ty).unwrap();
            let b = meter(&bytes, ty).unwrap();
            assert_eq!(a, b, "{name}");
        }
    }
}

fn function_names(wasm: &[u8]) -> Vec<(u32, String)> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CustomSection(c) = payload.unwrap()
            && let KnownCustom::Name(reader) = c.as_known()
        {
            for sub in reader {
                if let Name::Function(map) = sub.unwrap() {
                    for n in map {
                        let n = n.unwrap();
                        names.push((n.index, n.name.to_string()));
                    }
                }
            }
        }
    }
    names
}

#[test]
fn name_section_is_copied_or_renumbered() {
    let input = corpus_module("names");
    let original = function_names(&input);
    assert_eq!(
        original,
        vec![
            (0, "ext".to_string()),
            (1, "first".to_string()),
            (2, "second".to_string())
        ]
    );
    // Like the package: copied verbatim (stale by one).
    let plain = meter(&input, MeterType::I32).unwrap();
    assert_eq!(function_names(&plain), original);
    let input_customs = summarize(&input).customs;
    assert_eq!(summarize(&plain).customs, input_customs);
    // Optionally renumbered: usegas is 1, the defined functions move to 2 and 3.
    let opts = MeterOptions {
        renumber_names: true,
        ..MeterOptions::new(MeterType::I32)
    };
    let renamed = meter_with(&input, &opts).unwrap();
    validate(&renamed).unwrap();
    assert_eq!(
        function_names(&renamed),
        vec![
            (0, "ext".to_string()),
            (2, "first".to_string()),
            (3, "second".to_string())
        ]
    );
    // Code is unaffected by the option.
    assert_eq!(summarize(&renamed).code, summarize(&plain).code);
}

#[test]
fn i32_cost_overflow_is_reported() {
    // 60000 divisions in one segment: 2_160_000_000 + ... > i32::MAX.
    let mut wat = String::from("(module (func (param i32) (result i32) local.get 0\n");
    for _ in 0..60_000 {
        wat.push_str("i32.const 3 i32.div_s\n");
    }
    wat.push_str("))");
    let wasm = wat::parse_str(&wat).unwrap();
    assert!(matches!(
        meter(&wasm, MeterType::I32),
        Err(MeterError::CostOverflow { cost: 2_160_060_211 })
    ));
    let m = meter(&wasm, MeterType::I64).unwrap();
    assert_eq!(body_ops(&m, 0)[0], "I64Const { value: 2160060211 }");
}

#[test]
fn errors_for_non_modules() {
    assert!(matches!(meter(b"", MeterType::I32), Err(MeterError::Parse(_))));
    assert!(matches!(
        meter(b"\0asm\x01\0\0\0\x01\x05", MeterType::I32),
        Err(MeterError::Parse(_))
    ));
    let component = wat::parse_str("(component)").unwrap();
    assert!(matches!(
        meter(&component, MeterType::I32),
        Err(MeterError::Component)
    ));
}

#[test]
fn meter_type_for_format() {
    assert_eq!(
        MeterType::for_format("wasm32-unknown-emscripten-metering"),
        MeterType::I32
    );
    assert_eq!(
        MeterType::for_format("wasm64-unknown-emscripten-draft_2024_10_16-metering"),
        MeterType::I64
    );
}

#[test]
fn inline_variant_is_valid_and_exports_gas_globals() {
    for (name, bytes) in corpus() {
        for ty in [MeterType::I32, MeterType::I64] {
            let m = cu_metering::meter_inline(&bytes, &MeterOptions::new(ty))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            validate(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
            let s = summarize(&m);
            let used = s
                .exports
                .iter()
                .find(|e| e.0 == cu_metering::INLINE_GAS_USED_EXPORT)
                .unwrap_or_else(|| panic!("{name}: no gas export"));
            let limit = s
                .exports
                .iter()
                .find(|e| e.0 == cu_metering::INLINE_GAS_LIMIT_EXPORT)
                .unwrap();
            assert_eq!((used.1.as_str(), limit.1.as_str()), ("Global", "Global"));
            assert_eq!(limit.2, used.2 + 1);
            assert!(
                s.imports
                    .iter()
                    .any(|i| i.0 == "metering" && i.1 == cu_metering::INLINE_OUT_OF_GAS_FIELD)
            );
        }
    }
}

#[test]
fn inline_variant_charges_the_same_constants() {
    let input = corpus_module("control");
    let host = summarize(&meter(&input, MeterType::I32).unwrap());
    let inline = summarize(&cu_metering::meter_inline(&input, &MeterOptions::new(MeterType::I32)).unwrap());
    // Globals: 1 imported + 2 defined, so gas used is global 3 and the limit global 4.
    assert_eq!(host.code.len(), inline.code.len());
    let mut charges = 0;
    for (h, i) in host.code.iter().zip(&inline.code) {
        // Host statements: `i32.const c; call 2` (usegas is function 2).
        let host_costs: Vec<String> = h
            .ops
            .windows(2)
            .filter(|w| w[1] == "Call { function_index: 2 }" && w[0].starts_with("I32Const"))
            .map(|w| w[0].replace("I32Const", "Const"))
            .collect();
        // Inline statements: `global.get 3; i64.const c; ...`.
        let inline_costs: Vec<String> = i
            .ops
            .windows(2)
            .filter(|w| w[0] == "GlobalGet { global_index: 3 }" && w[1].starts_with("I64Const"))
            .map(|w| w[1].replace("I64Const", "Const"))
            .collect();
        assert_eq!(host_costs, inline_costs);
        charges += host_costs.len();
    }
    assert!(charges > 10);
    let fib = &inline.code[0].ops;
    assert_eq!(
        &fib[..10],
        &[
            "GlobalGet { global_index: 3 }",
            "I64Const { value: 258 }",
            "I64Add",
            "GlobalSet { global_index: 3 }",
            "GlobalGet { global_index: 3 }",
            "GlobalGet { global_index: 4 }",
            "I64GtU",
            "If { blockty: Empty }",
            "Call { function_index: 2 }",
            "End",
        ]
    );
}

#[test]
fn inline_variant_rewrites_pre_metered_calls() {
    let pre = corpus_module("pre_metered");
    let m = cu_metering::meter_inline(&pre, &MeterOptions::new(MeterType::I32)).unwrap();
    validate(&m).unwrap();
    let s = summarize(&m);
    assert_eq!(s.imports[0].1, "usegas");
    assert_eq!(s.imports[1].1, "out_of_gas");
    assert_eq!(
        s.code[0].ops,
        vec![
            "I32Const { value: 92 }",
            "I64ExtendI32S",
            "GlobalGet { global_index: 0 }",
            "I64Add",
            "GlobalSet { global_index: 0 }",
            "GlobalGet { global_index: 0 }",
            "GlobalGet { global_index: 1 }",
            "I64GtU",
            "If { blockty: Empty }",
            "Call { function_index: 1 }",
            "End",
            "Nop",
            "End",
        ]
    );
    // usegas escaping through an export cannot be inlined.
    let escaping = wat::parse_str(
        r#"(module (import "metering" "usegas" (func $u (param i32))) (export "u" (func $u)))"#,
    )
    .unwrap();
    assert!(matches!(
        cu_metering::meter_inline(&escaping, &MeterOptions::new(MeterType::I32)),
        Err(MeterError::UsegasEscapes)
    ));
    let clash =
        wat::parse_str(r#"(module (global (export "metering_gas_used") i32 (i32.const 0)))"#).unwrap();
    assert!(matches!(
        cu_metering::meter_inline(&clash, &MeterOptions::new(MeterType::I32)),
        Err(MeterError::NameClash(_))
    ));
}

//! Shared helpers of the cu-metering integration tests: a structural, encoding-independent
//! summary of a module (parsed with wasmparser) and comparison helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wasmparser::{
    ConstExpr, DataKind, ElementItems, ElementKind, Parser, Payload, TableInit, TypeRef, ValType, Validator,
    WasmFeatures,
};

/// One function body: local declarations and the operator sequence (Debug-printed, so LEB
/// encodings do not matter but every immediate does).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Func {
    pub locals: Vec<(u32, String)>,
    pub ops: Vec<String>,
}

/// Everything that defines a module's meaning, independent of its binary layout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub section_order: Vec<u8>,
    pub types: Vec<String>,
    pub imports: Vec<(String, String, String)>,
    pub functions: Vec<u32>,
    pub tables: Vec<String>,
    pub memories: Vec<String>,
    pub tags: Vec<String>,
    pub globals: Vec<String>,
    pub exports: Vec<(String, String, u32)>,
    pub start: Option<u32>,
    pub elements: Vec<String>,
    pub data_count: Option<u32>,
    pub data: Vec<String>,
    pub code: Vec<Func>,
    pub customs: Vec<(String, Vec<u8>)>,
}

fn const_expr(expr: &ConstExpr<'_>) -> String {
    let mut ops = expr.get_operators_reader();
    let mut s = String::new();
    while !ops.eof() {
        let op = ops.read().unwrap();
        write!(s, "{op:?};").unwrap();
    }
    s
}

/// Parses `wasm` into a [`Summary`]; panics on malformed input.
pub fn summarize(wasm: &[u8]) -> Summary {
    try_summarize(wasm).unwrap_or_else(|e| panic!("cannot summarize module: {e}"))
}

/// Parses `wasm` into a [`Summary`].
pub fn try_summarize(wasm: &[u8]) -> Result<Summary, wasmparser::BinaryReaderError> {
    let mut s = Summary::default();
    let mut parser = Parser::new(0);
    parser.set_features(WasmFeatures::all());
    for payload in parser.parse_all(wasm) {
        let payload = payload?;
        if let Some((id, _)) = payload.as_section() {
            s.section_order.push(id);
        }
        match payload {
            Payload::TypeSection(r) => {
                for g in r {
                    for t in g?.types() {
                        s.types.push(format!("{t:?}"));
                    }
                }
            }
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    let i = i?;
                    s.imports
                        .push((i.module.to_string(), i.name.to_string(), format!("{:?}", i.ty)));
                }
            }
            Payload::FunctionSection(r) => {
                for f in r {
                    s.functions.push(f?);
                }
            }
            Payload::TableSection(r) => {
                for t in r {
                    let t = t?;
                    let init = match &t.init {
                        TableInit::RefNull => "null".to_string(),
                        TableInit::Expr(e) => const_expr(e),
                    };
                    s.tables.push(format!("{:?} {init}", t.ty));
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    s.memories.push(format!("{:?}", m?));
                }
            }
            Payload::TagSection(r) => {
                for t in r {
                    s.tags.push(format!("{:?}", t?));
                }
            }
            Payload::GlobalSection(r) => {
                for g in r {
                    let g = g?;
                    s.globals.push(format!("{:?} {}", g.ty, const_expr(&g.init_expr)));
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e?;
                    s.exports
                        .push((e.name.to_string(), format!("{:?}", e.kind), e.index));
                }
            }
            Payload::StartSection { func, .. } => s.start = Some(func),
            Payload::ElementSection(r) => {
                for e in r {
                    let e = e?;
                    let mut d = match &e.kind {
                        ElementKind::Passive => "passive".to_string(),
                        ElementKind::Declared => "declared".to_string(),
                        ElementKind::Active {
                            table_index,
                            offset_expr,
                        } => format!(
                            "active table {} at {}",
                            table_index.unwrap_or(0),
                            const_expr(offset_expr)
                        ),
                    };
                    match e.items {
                        ElementItems::Functions(f) => {
                            d.push_str(" funcs");
                            for i in f {
                                write!(d, " {}", i?).unwrap();
                            }
                        }
                        ElementItems::Expressions(ty, exprs) => {
                            write!(d, " exprs {ty:?}").unwrap();
                            for x in exprs {
                                write!(d, " [{}]", const_expr(&x?)).unwrap();
                            }
                        }
                    }
                    s.elements.push(d);
                }
            }
            Payload::DataCountSection { count, .. } => s.data_count = Some(count),
            Payload::DataSection(r) => {
                for d in r {
                    let d = d?;
                    let kind = match &d.kind {
                        DataKind::Passive => "passive".to_string(),
                        DataKind::Active {
                            memory_index,
                            offset_expr,
                        } => format!("active mem {memory_index} at {}", const_expr(offset_expr)),
                    };
                    s.data.push(format!("{kind} {:02x?}", d.data));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut f = Func::default();
                for l in body.get_locals_reader()? {
                    let (n, t) = l?;
                    f.locals.push((n, format!("{t:?}")));
                }
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    f.ops.push(format!("{:?}", ops.read()?));
                }
                s.code.push(f);
            }
            Payload::CustomSection(c) => {
                s.customs.push((c.name().to_string(), c.data().to_vec()));
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Validates with every feature enabled.
pub fn validate(wasm: &[u8]) -> Result<(), String> {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(wasm)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Compares two summaries field by field with a readable first difference. Custom sections are
/// compared only when `customs` is set. Returns the number of functions compared.
pub fn assert_same(ours: &Summary, theirs: &Summary, what: &str, customs: bool) -> usize {
    assert_eq!(ours.types, theirs.types, "{what}: types differ");
    assert_eq!(ours.imports, theirs.imports, "{what}: imports differ");
    assert_eq!(ours.functions, theirs.functions, "{what}: function types differ");
    assert_eq!(ours.tables, theirs.tables, "{what}: tables differ");
    assert_eq!(ours.memories, theirs.memories, "{what}: memories differ");
    assert_eq!(ours.tags, theirs.tags, "{what}: tags differ");
    assert_eq!(ours.globals, theirs.globals, "{what}: globals differ");
    assert_eq!(ours.exports, theirs.exports, "{what}: exports differ");
    assert_eq!(ours.start, theirs.start, "{what}: start differs");
    assert_eq!(ours.elements, theirs.elements, "{what}: elements differ");
    assert_eq!(ours.data_count, theirs.data_count, "{what}: data count differs");
    assert_eq!(ours.data, theirs.data, "{what}: data differs");
    assert_eq!(
        ours.code.len(),
        theirs.code.len(),
        "{what}: number of function bodies differs"
    );
    for (i, (a, b)) in ours.code.iter().zip(&theirs.code).enumerate() {
        assert_eq!(a.locals, b.locals, "{what}: locals of body {i} differ");
        if a.ops != b.ops {
            let at = a
                .ops
                .iter()
                .zip(&b.ops)
                .position(|(x, y)| x != y)
                .unwrap_or(a.ops.len().min(b.ops.len()));
            let lo = at.saturating_sub(5);
            panic!(
                "{what}: body {i} differs at op {at} (ours {} ops, theirs {} ops)\n ours: {:#?}\n theirs: {:#?}",
                a.ops.len(),
                b.ops.len(),
                &a.ops[lo..(at + 5).min(a.ops.len())],
                &b.ops[lo..(at + 5).min(b.ops.len())],
            );
        }
    }
    if customs {
        assert_eq!(ours.customs, theirs.customs, "{what}: custom sections differ");
        assert_eq!(
            ours.section_order, theirs.section_order,
            "{what}: section order differs"
        );
    }
    ours.code.len()
}

/// The `.wat` files of `tests/corpus`, sorted, as (name, binary).
pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let bytes = wat::parse_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

/// Value type name as the JS side of the runtime differential expects it.
pub fn js_type(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// Signature of every function (imported first) as (params, results).
pub fn func_sigs(wasm: &[u8]) -> Vec<(Vec<ValType>, Vec<ValType>)> {
    let mut types = Vec::new();
    let mut sigs = Vec::new();
    let mut parser = Parser::new(0);
    parser.set_features(WasmFeatures::all());
    for payload in parser.parse_all(wasm) {
        match payload.unwrap() {
            Payload::TypeSection(r) => {
                for g in r {
                    for t in g.unwrap().types() {
                        match t.unwrap_func_opt() {
                            Some(f) => types.push(Some((f.params().to_vec(), f.results().to_vec()))),
                            None => types.push(None),
                        }
                    }
                }
            }
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    if let TypeRef::Func(t) = i.unwrap().ty {
                        sigs.push(types[t as usize].clone().unwrap());
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    sigs.push(types[t.unwrap() as usize].clone().unwrap());
                }
            }
            _ => {}
        }
    }
    sigs
}

trait FuncOpt {
    fn unwrap_func_opt(&self) -> Option<&wasmparser::FuncType>;
}

impl FuncOpt for wasmparser::SubType {
    fn unwrap_func_opt(&self) -> Option<&wasmparser::FuncType> {
        match &self.composite_type.inner {
            wasmparser::CompositeInnerType::Func(f) => Some(f),
            _ => None,
        }
    }
}

//! Load-time rewriting of a module before compilation: every mutable global the module defines but does
//! not export is exported as `__cu_global_<index>`, so that snapshots can save and restore it (the stack
//! pointer `__stack_pointer` is such a global). Sections other than the export section are copied byte
//! for byte.

use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

use crate::error::WasmError;

/// Prefix of the exports added for internal mutable globals.
pub const GLOBAL_EXPORT_PREFIX: &str = "__cu_global_";

/// Section order of the binary format; the export section goes after globals and before start.
fn order(id: u8) -> u8 {
    match id {
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 5,
        13 => 6,
        6 => 7,
        7 => 8,
        8 => 9,
        9 => 10,
        12 => 11,
        10 => 12,
        11 => 13,
        _ => 0,
    }
}

/// Returns the module with its internal mutable globals exported, and the names of every exported
/// mutable global (the state a snapshot must carry besides memory).
pub fn export_mutable_globals(wasm: &[u8]) -> Result<(Vec<u8>, Vec<String>), WasmError> {
    let bad = |e: wasmparser::BinaryReaderError| WasmError::Compile(e.to_string());
    let mut imported_globals = 0u32;
    let mut mutable: Vec<u32> = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut sections: Vec<(u8, std::ops::Range<usize>)> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(bad)?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    if matches!(import.map_err(bad)?.ty, wasmparser::TypeRef::Global(_)) {
                        imported_globals += 1;
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.clone().into_iter().enumerate() {
                    if global.map_err(bad)?.ty.mutable {
                        mutable.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(bad)?;
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                return Err(WasmError::Compile("components are not AO modules".into()));
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
    }
    let mut names: Vec<String> = Vec::new();
    let mut section = ExportSection::new();
    for (name, kind, index) in &exports {
        let kind = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
            ExternalKind::Table => ExportKind::Table,
            ExternalKind::Memory => ExportKind::Memory,
            ExternalKind::Global => ExportKind::Global,
            ExternalKind::Tag => ExportKind::Tag,
        };
        if kind == ExportKind::Global && mutable.contains(index) {
            names.push(name.clone());
        }
        section.export(name, kind, *index);
    }
    for index in &mutable {
        let already = exports
            .iter()
            .any(|(_, k, i)| *k == ExternalKind::Global && i == index);
        if !already {
            let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
            section.export(&name, ExportKind::Global, *index);
            names.push(name);
        }
    }
    let mut module = wasm_encoder::Module::new();
    let mut placed = false;
    for (id, range) in &sections {
        if *id == 7 {
            module.section(&section);
            placed = true;
            continue;
        }
        if !placed && *id != 0 && order(*id) > order(7) {
            module.section(&section);
            placed = true;
        }
        module.section(&RawSection {
            id: *id,
            data: &wasm[range.clone()],
        });
    }
    if !placed {
        module.section(&section);
    }
    Ok((module.finish(), names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_mutable_globals_become_exports() {
        let wasm = wat::parse_str(
            r#"(module
                (import "env" "g" (global $imported i32))
                (global $sp (mut i32) (i32.const 1024))
                (global $const i32 (i32.const 7))
                (global $shown (mut i64) (i64.const 0))
                (memory (export "memory") 1)
                (export "shown" (global $shown))
                (func (export "f") (result i32) global.get $sp))"#,
        )
        .unwrap();
        let (out, names) = export_mutable_globals(&wasm).unwrap();
        assert_eq!(names, vec!["shown".to_string(), "__cu_global_1".to_string()]);
        wasmparser::Validator::new().validate_all(&out).unwrap();
        // Everything else is unchanged: same exports plus one.
        let exports: Vec<String> = Parser::new(0)
            .parse_all(&out)
            .filter_map(|p| match p.unwrap() {
                Payload::ExportSection(r) => Some(
                    r.into_iter()
                        .map(|e| e.unwrap().name.to_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(exports, ["memory", "shown", "f", "__cu_global_1"]);
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section_in_order() {
        let wasm = wat::parse_str(r#"(module (global (mut i32) (i32.const 0)) (func) (start 0))"#).unwrap();
        let (out, names) = export_mutable_globals(&wasm).unwrap();
        assert_eq!(names, ["__cu_global_0"]);
        wasmparser::Validator::new().validate_all(&out).unwrap();
    }
}

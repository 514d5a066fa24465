//! Loading modules: the AOT cache (reuse, stale and corrupt artefacts rebuilt), and bad modules refused
//! with a clear error.

use cu_tests::*;
use cu_types::ModuleFormat;
use cu_wasm::{AotCache, Loader, Origin, WasmError};

#[test]
fn the_aot_cache_is_reused_and_corrupt_artefacts_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat_module("wasm64");
    let loader = Loader::new(Some(AotCache::new(dir.path()))).unwrap();
    let first = loader.load(&wasm, ModuleFormat::Wasm64).unwrap();
    assert_eq!(first.origin, Origin::Compiled { rebuilt: None });
    let second = loader.load(&wasm, ModuleFormat::Wasm64).unwrap();
    assert_eq!(second.origin, Origin::Cache);

    let artefact = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&artefact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&artefact, &bytes).unwrap();
    let third = loader.load(&wasm, ModuleFormat::Wasm64).unwrap();
    assert_eq!(
        third.origin,
        Origin::Compiled {
            rebuilt: Some("payload hash mismatch (corrupt)")
        }
    );
    assert_eq!(
        loader.load(&wasm, ModuleFormat::Wasm64).unwrap().origin,
        Origin::Cache
    );

    // A module from the cache behaves like a fresh compile.
    let log = read_log(&repo().join("tests/modules/wat/messages/main.jsonl"));
    let a = run_ours(
        wasm.clone(),
        ModuleFormat::Wasm64,
        log.clone(),
        Default::default(),
    );
    let cached = on_eval_thread(move || {
        let loader = Loader::new(Some(AotCache::new(dir.path()))).unwrap();
        let module = loader.load(&wasm, ModuleFormat::Wasm64).unwrap();
        assert_eq!(module.origin, Origin::Cache);
        let mut p = boot(&module, Default::default());
        log.iter()
            .map(|(m, e)| serde_json::to_value(p.handle(m, e).unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    for (x, y) in a.iter().zip(&cached) {
        assert_eq!(x["Output"], y["Output"]);
    }
}

#[test]
fn bad_modules_are_refused_clearly() {
    let loader = Loader::new(None).unwrap();
    let err = loader
        .load(b"\0asm\x01\0\0\0garbage", ModuleFormat::Emscripten2)
        .err()
        .unwrap();
    assert!(matches!(err, WasmError::Compile(_)), "{err}");

    let unknown_import = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1)
            (func (export "handle") (param i32 i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let err = loader
        .load(&unknown_import, ModuleFormat::Emscripten2)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("env.launch_missiles"), "{err}");

    let no_handle = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let err = loader
        .load(&no_handle, ModuleFormat::Emscripten2)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not export handle"), "{err}");

    assert!("wasm32-unknown-unknown".parse::<ModuleFormat>().is_err());
}

#[test]
fn a_module_that_traps_at_boot_is_a_boot_error() {
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "__wasm_call_ctors") unreachable)
            (func (export "stackSave") (result i32) i32.const 0)
            (func (export "stackRestore") (param i32))
            (func (export "stackAlloc") (param i32) (result i32) i32.const 0)
            (func (export "handle") (param i32 i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let module = compile(&wasm, ModuleFormat::Emscripten2);
    let err = on_eval_thread(move || {
        cu_wasm::Process::boot(module, Default::default())
            .err()
            .unwrap()
            .to_string()
    });
    assert!(
        err.contains("failed to start") && err.contains("unreachable"),
        "{err}"
    );
}

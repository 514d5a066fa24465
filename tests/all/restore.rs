//! Restore fidelity: messages 1..n straight equal a snapshot at k, a restore on a fresh instance, then
//! k+1..n (outputs and memory hash), for the Lua process and every format's probe.

use std::sync::Arc;

use cu_tests::*;
use cu_types::{Limits, ModuleFormat};
use cu_wasm::{Process, ProcessConfig, Snapshot};

fn check(wasm: Vec<u8>, format: ModuleFormat, log: Vec<(String, String)>, k: usize) {
    on_eval_thread(move || {
        let module = compile(&wasm, format);
        let mut straight = boot(&module, Limits::default());
        let expected: Vec<_> = log.iter().map(|(m, e)| straight.handle(m, e).unwrap()).collect();
        let expected_hash = straight.memory_hash();

        let mut first = boot(&module, Limits::default());
        for (m, e) in &log[..k] {
            first.handle(m, e).unwrap();
        }
        let bytes = first.snapshot().unwrap().encode().unwrap();
        drop(first);
        let config = ProcessConfig {
            this_program: THIS_PROGRAM.into(),
            ..ProcessConfig::default()
        };
        let mut resumed =
            Process::restore(Arc::clone(&module), Snapshot::decode(&bytes).unwrap(), config).unwrap();
        for (i, (m, e)) in log.iter().enumerate().skip(k) {
            assert_eq!(resumed.handle(m, e).unwrap(), expected[i], "{format} message {i}");
        }
        assert_eq!(resumed.memory_hash(), expected_hash, "{format}");
    });
}

#[test]
fn every_format_resumes_from_a_snapshot_exactly() {
    for (stem, format) in WAT_MODULES {
        let log = read_log(&repo().join("tests/modules/wat/messages/main.jsonl"));
        // Snapshot after `fs` (13 messages): the file system, the clock and the heap are all in use.
        check(wat_module(stem), format, log, 13);
    }
}

#[test]
fn lua_process_resumes_from_a_snapshot_exactly() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = read_log(&repo().join("tests/modules/lua/messages.jsonl"));
    for k in [1, 20, 42] {
        check(wasm.clone(), ModuleFormat::Emscripten2, log.clone(), k);
    }
}

#[test]
fn a_snapshot_of_another_module_is_refused() {
    on_eval_thread(|| {
        let a = compile(&wat_module("emscripten2"), ModuleFormat::Emscripten2);
        let b = compile(&wat_module("emscripten3"), ModuleFormat::Emscripten3);
        let snap = boot(&a, Limits::default()).snapshot().unwrap();
        let err = Process::restore(b, snap, ProcessConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid snapshot"), "{err}");
    });
}

#[test]
fn rollbacks_are_exact_whatever_the_base_snapshot_interval() {
    let log = read_log(&repo().join("tests/modules/wat/messages/main.jsonl"));
    for (stem, format) in [
        ("emscripten2", ModuleFormat::Emscripten2),
        ("wasm64", ModuleFormat::Wasm64),
    ] {
        let wasm = wat_module(stem);
        let log = log.clone();
        on_eval_thread(move || {
            let module = compile(&wasm, format);
            let run = |journal_limit: usize, journal_max_bytes: usize| {
                let config = ProcessConfig {
                    this_program: THIS_PROGRAM.into(),
                    journal_limit,
                    journal_max_bytes,
                    ..ProcessConfig::default()
                };
                let mut p = Process::boot(Arc::clone(&module), config).unwrap();
                let outs: Vec<_> = log.iter().map(|(m, e)| p.handle(m, e).unwrap()).collect();
                (outs, p.memory_hash(), p.rollbacks())
            };
            let (a, hash_a, rollbacks) = run(1000, 64 << 20);
            assert_eq!(rollbacks, 2, "{stem}: fail and error-field");
            for (limit, bytes) in [(1, 64 << 20), (3, 64 << 20), (1000, 2000)] {
                let (b, hash_b, _) = run(limit, bytes);
                assert_eq!(a, b, "{stem} journal {limit}/{bytes}");
                assert_eq!(hash_a, hash_b, "{stem} journal {limit}/{bytes}");
            }
        });
    }
}

/// A bare memory image (what a reference CU's checkpoint holds) loads as the reference loader reloads
/// memory: the glue's heap growth when the image is longer, a prefix overwrite, the tail left as it is;
/// the booted process then continues exactly as the one the image was taken from.
#[test]
fn a_memory_image_loads_as_the_reference_loader_reloads_it() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = read_log(&repo().join("tests/modules/lua/messages.jsonl"));
    on_eval_thread(move || {
        let module = compile(&wasm, ModuleFormat::Emscripten2);
        let mut source = boot(&module, Limits::default());
        let k = 20;
        for (m, e) in &log[..k] {
            source.handle(m, e).unwrap();
        }
        let image = source.memory().to_vec();
        let mut loaded = boot(&module, Limits::default());
        let booted_len = loaded.memory().len() as u64;
        loaded.load_memory_image(&image).unwrap();
        assert_eq!(&loaded.memory()[..image.len()], &image[..]);
        if image.len() as u64 > booted_len {
            let [want, _, _] = cu_wasm::host::emscripten::heap_growth_candidates(
                booted_len,
                image.len() as u64,
                ModuleFormat::Emscripten2.heap_max(),
            )
            .unwrap();
            assert_eq!(loaded.memory().len() as u64, want, "grown as the glue grows");
        }
        for (m, e) in &log[k..] {
            assert_eq!(loaded.handle(m, e).unwrap(), source.handle(m, e).unwrap());
        }

        // A shorter image overwrites only the prefix.
        let mut short = boot(&module, Limits::default());
        let before = short.memory().to_vec();
        short.load_memory_image(&[0xab; 65536]).unwrap();
        assert!(short.memory()[..65536].iter().all(|&b| b == 0xab));
        assert_eq!(&short.memory()[65536..], &before[65536..]);

        // An image past the format's heap maximum is refused, and the process is left usable.
        let mut huge = boot(&module, Limits::default());
        let too_big = vec![0u8; ModuleFormat::Emscripten2.heap_max() as usize + 65536];
        assert!(huge.load_memory_image(&too_big).is_err());
        let (m, e) = &log[0];
        huge.handle(m, e).unwrap();
    });
}
